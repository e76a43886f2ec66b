"""Browsing a dataset for the review dashboard: pages of images under a sort, filters and weights;
histograms; one image's values and percentiles; the images a bulk action applies to.

Every query reads the normalised cache (`storage.ranking.ensure_normalised`) joined with the live
decisions, so re-ranking 100,000 images is a weighted mean and a top-N sort, not a re-normalisation,
and a decision made in one browser tab shows in every other one on its next query. The caller makes
sure the cache exists (and decides how stale it may be) before calling these functions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import duckdb
import pandas as pd

from storage.db import fetch_one, fetch_value, quote_ident
from storage.ranking import NORMALISED, cache_state, default_weights, ensemble_sql, validate_weights
from storage.scores import MetricInfo, metric_catalogue

DECISION_FILTERS = ("all", "undecided", "accepted", "rejected")
STATUS_FILTERS = ("all", "ok", "error", "pending")
ENSEMBLE = "ensemble"
FILE_COLUMNS = ("image_id", "path", "status", "error", "sha256", "width", "height")


@dataclass(frozen=True)
class View:
    """What the reviewer is looking at. `weights` name metrics whose weight differs from the default;
    `sort` is 'ensemble', 'path' or a metric; NULLs sort last either way and ties go by path.
    `thresholds` maps a metric (or 'ensemble') to an inclusive (min, max), either end None = open;
    an image without that value does not pass a threshold on it."""

    weights: Mapping[str, float] = field(default_factory=dict)
    sort: str = ENSEMBLE
    descending: bool = True
    decision: str = "all"
    status: str = "all"
    thresholds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    rows: pd.DataFrame   # FILE_COLUMNS, ensemble, decision, then one column per metric
    total: int           # images matching the view's filters
    offset: int


@dataclass(frozen=True)
class Histogram:
    column: str
    lo: float            # left edge of the first bin
    hi: float            # right edge of the last bin
    counts: list[int]    # images per bin, equal widths
    missing: int         # ok images without a value

    @property
    def edges(self) -> list[float]:
        step = (self.hi - self.lo) / len(self.counts)
        return [self.lo + i * step for i in range(len(self.counts) + 1)]


@dataclass(frozen=True)
class Value:
    column: str
    value: float | None
    percentile: float | None   # % of the dataset's ok images with a lower value (ties count half)


class _Query:
    """The SQL of a View: one row per present image with `ensemble` and `decision`, filtered."""

    def __init__(self, con: duckdb.DuckDBPyConnection, view: View) -> None:
        state = cache_state(con)
        metrics = list(state.metrics) if state else []   # the columns the normalised table has
        known = {m.name for m in metrics}
        for name in list(view.thresholds) + ([view.sort] if view.sort not in (ENSEMBLE, "path") else []):
            if name not in known and name != ENSEMBLE:
                raise ValueError(f"unknown metric {name!r} (known: {', '.join(sorted(known))})")
        if view.decision not in DECISION_FILTERS:
            raise ValueError(f"decision filter must be one of {', '.join(DECISION_FILTERS)}")
        if view.status not in STATUS_FILTERS:
            raise ValueError(f"status filter must be one of {', '.join(STATUS_FILTERS)}")
        weights = default_weights(metrics)
        # A weight for a metric declared after the cache was built is valid but has no column yet.
        catalogue = metrics if set(view.weights) <= known else metric_catalogue(con)
        weights.update(validate_weights(catalogue, view.weights))
        self.metrics = metrics
        self.view = view
        # Metrics no image has a value of add nothing to an ensemble: leaving them out of the
        # expression keeps it short (planning a 40-term expression costs more than running it).
        with_values = [m for m in metrics if state.counts.get(m.name)]
        metric_cols = "".join(f", n.{quote_ident(m.name)}" for m in metrics)
        self.rows = f"""
            SELECT {', '.join('n.' + c for c in FILE_COLUMNS)},
                   {ensemble_sql(with_values, weights)} AS ensemble,
                   coalesce(d.decision, 'undecided') AS decision{metric_cols}
            FROM {NORMALISED} n LEFT JOIN current_decisions d ON d.image_id = n.image_id
        """
        where, self.params = [], []
        if view.decision != "all":
            where.append("decision = ?")
            self.params.append(view.decision)
        if view.status != "all":
            where.append("status = ?")
            self.params.append(view.status)
        for name, (lo, hi) in view.thresholds.items():
            for bound, op in ((lo, ">="), (hi, "<=")):
                if bound is not None and math.isfinite(float(bound)):
                    where.append(f"{quote_ident(name)} {op} ?")
                    self.params.append(float(bound))
        self.filtered = f"SELECT * FROM ({self.rows}) {'WHERE ' + ' AND '.join(where) if where else ''}"
        direction = "DESC" if view.descending else "ASC"
        self.order = ("ORDER BY path " + direction if view.sort == "path"
                      else f"ORDER BY {quote_ident(view.sort)} {direction} NULLS LAST, path")


def page(con: duckdb.DuckDBPyConnection, view: View, offset: int = 0, limit: int = 48) -> Page:
    """One page of the view, best first under its sort, and how many images match its filters."""
    q = _Query(con, view)
    cur = con.cursor()
    total = int(fetch_value(cur, f"SELECT count(*) FROM ({q.filtered})", q.params))
    rows = cur.execute(f"{q.filtered} {q.order} LIMIT {int(limit)} OFFSET {max(0, int(offset))}", q.params).df()
    return Page(rows, total, max(0, int(offset)))


def top_undecided(con: duckdb.DuckDBPyConnection, view: View, k: int) -> list[int]:
    """Ids of the undecided images among the first `k` of the view (bulk accept never overrides a
    decision someone already made)."""
    q = _Query(con, view)
    sql = f"SELECT image_id FROM ({q.filtered} {q.order} LIMIT {max(0, int(k))}) WHERE decision = 'undecided'"
    return [int(r[0]) for r in con.cursor().execute(sql, q.params).fetchall()]


def undecided_worse_than(con: duckdb.DuckDBPyConnection, view: View, column: str, threshold: float) -> list[int]:
    """Ids of the undecided images in the view whose `column` (a metric or 'ensemble') is worse than
    `threshold`: below it when higher is better, above it when lower is better. Images without a
    value are left alone."""
    q = _Query(con, view)
    higher = True if column == ENSEMBLE else _metric(q.metrics, column).higher_is_better
    op = "<" if higher else ">"
    sql = f"SELECT image_id FROM ({q.filtered}) WHERE decision = 'undecided' AND {quote_ident(column)} {op} ?"
    return [int(r[0]) for r in con.cursor().execute(sql, [*q.params, float(threshold)]).fetchall()]


def histograms(con: duckdb.DuckDBPyConnection, columns: list[str], weights: Mapping[str, float] | None = None,
               bins: int = 30) -> dict[str, Histogram]:
    """Distribution of each column (metrics and/or 'ensemble') over the dataset's ok images, in one
    scan. A metric with a declared closed range is binned over that range, others over their values."""
    if not columns:
        return {}
    q = _Query(con, View(weights=weights or {}))
    by_name = {m.name: m for m in q.metrics}
    cur = con.cursor()
    ok = f"SELECT * FROM ({q.rows}) WHERE status = 'ok'"
    cols = [quote_ident(c) for c in columns]
    extent = fetch_one(cur, f"SELECT {', '.join(f'min({c}), max({c})' for c in cols)} FROM ({ok})")
    ranges = []
    for i, name in enumerate(columns):
        m = by_name.get(name)
        if name == ENSEMBLE:
            lo, hi = 0.0, 1.0
        elif m is not None and m.min is not None and m.max is not None:
            lo, hi = float(m.min), float(m.max)
        else:
            lo, hi = extent[2 * i], extent[2 * i + 1]
            lo, hi = (0.0, 1.0) if lo is None else (float(lo), float(hi))
        if hi <= lo:
            hi = lo + 1.0   # a constant column: one visible bar at its value
        ranges.append((lo, hi))
    parts = []
    for c, (lo, hi) in zip(cols, ranges):
        width = (hi - lo) / bins
        index = f"least(greatest(floor(({c} - {lo!r}) / {width!r}), 0), {bins - 1})::INTEGER"
        parts.append(f"histogram({index}) FILTER (WHERE {c} IS NOT NULL), count(*) FILTER (WHERE {c} IS NULL)")
    row = fetch_one(cur, f"SELECT {', '.join(parts)} FROM ({ok})")
    out = {}
    for i, (name, (lo, hi)) in enumerate(zip(columns, ranges)):
        found = row[2 * i] or {}
        counts = [int(found.get(b, 0)) for b in range(bins)]
        out[name] = Histogram(name, lo, hi, counts, int(row[2 * i + 1]))
    return out


def image_values(con: duckdb.DuckDBPyConnection, image_id: int, weights: Mapping[str, float] | None = None,
                 columns: list[str] | None = None) -> list[Value]:
    """The image's ensemble and every metric (or those of `columns`), each with its percentile among
    the dataset's ok images."""
    q = _Query(con, View(weights=weights or {}))
    known = [ENSEMBLE] + [m.name for m in q.metrics]
    columns = known if columns is None else [c for c in known if c in columns]
    cols = [quote_ident(c) for c in columns]
    parts = ", ".join(
        f"t.{c}, (count(*) FILTER (WHERE x.{c} < t.{c}) + 0.5 * count(*) FILTER (WHERE x.{c} = t.{c})) "
        f"* 100.0 / nullif(count(x.{c}), 0)"
        for c in cols
    )
    row = fetch_one(
        con.cursor(),
        f"""
        WITH rows AS ({q.rows}), t AS (SELECT * FROM rows WHERE image_id = ?)
        SELECT {parts} FROM rows x, t WHERE x.status = 'ok' GROUP BY ALL
        """,
        [int(image_id)],
    )
    if row is None:   # the image is not ok itself or no ok images yet: values without percentiles
        row = fetch_one(con.cursor(), f"SELECT {', '.join(cols)} FROM ({q.rows}) WHERE image_id = ?", [int(image_id)])
        if row is None:
            return []
        row = [v for value in row for v in (value, None)]
    return [Value(c, _float(row[2 * i]), _float(row[2 * i + 1]) if row[2 * i] is not None else None)
            for i, c in enumerate(columns)]


def image_record(con: duckdb.DuckDBPyConnection, image_id: int) -> dict | None:
    """File facts and the current decision of one image (None if unknown)."""
    cur = con.cursor()
    row = fetch_one(
        cur,
        """
        SELECT i.id, i.path, i.status, i.error, i.width, i.height, i.bytes, i.format, i.sha256, i.mtime,
               i.present, coalesce(d.decision, 'undecided'), d.decided_at
        FROM images i LEFT JOIN current_decisions d ON d.image_id = i.id WHERE i.id = ?
        """,
        [int(image_id)],
    )
    if row is None:
        return None
    keys = ("image_id", "path", "status", "error", "width", "height", "bytes", "format", "sha256", "mtime",
            "present", "decision", "decided_at")
    return dict(zip(keys, row))


def review_version(con: duckdb.DuckDBPyConnection) -> int:
    """Grows with every decision anyone records: lets an open tab notice another tab's work cheaply."""
    return int(fetch_value(con.cursor(), "SELECT coalesce(max(id), 0) FROM decisions"))


def _metric(metrics: list[MetricInfo], name: str) -> MetricInfo:
    for m in metrics:
        if m.name == name:
            return m
    raise ValueError(f"unknown metric {name!r} (known: {', '.join(m.name for m in metrics)})")


def _float(v: object) -> float | None:
    return None if v is None else float(v)


def value_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many images have a value of each metric (a scorer that never ran has none), as of the
    last build of the normalised cache."""
    state = cache_state(con)
    return dict(state.counts) if state else {}
