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
from functools import cached_property
from typing import Mapping

import duckdb
import numpy as np
import pandas as pd

from storage.db import fetch_one, fetch_value, quote_ident
from storage.ranking import (
    NORMALISED,
    cache_state,
    cached_ensemble_sql,
    default_weights,
    validate_weights,
    weight_vector,
)
from storage.scores import MetricInfo, metric_catalogue

DECISION_FILTERS = ("all", "undecided", "accepted", "rejected")
STATUS_FILTERS = ("all", "ok", "error", "pending")
ENSEMBLE = "ensemble"
HISTOGRAM_BINS = 30
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
class Distribution:
    """One column's values over the dataset's ok images, sorted, for histograms and percentiles."""

    column: str
    values: np.ndarray        # sorted, without missing values
    missing: int              # ok images without a value
    lo: float                 # the range histograms cover: the declared one if closed, else the data's
    hi: float

    @classmethod
    def of(cls, column: str, values: np.ndarray, metric: MetricInfo | None = None) -> Distribution:
        known = np.sort(values[~np.isnan(values)])
        if metric is not None and metric.min is not None and metric.max is not None:
            lo, hi = float(metric.min), float(metric.max)
        elif len(known):
            lo, hi = float(known[0]), float(known[-1])
        else:
            lo, hi = 0.0, 1.0
        if hi <= lo:
            hi = lo + 1.0   # a constant column: one visible bar at its value
        return cls(column, known, int(len(values) - len(known)), lo, hi)

    def percentile(self, value: float | None) -> float | None:
        """% of the values below `value`, ties counting half (None without a value or any data)."""
        if value is None or not len(self.values):
            return None
        below = np.searchsorted(self.values, value, "left")
        above = np.searchsorted(self.values, value, "right")
        return float((below + 0.5 * (above - below)) * 100.0 / len(self.values))

    @cached_property
    def histogram(self) -> Histogram:
        """HISTOGRAM_BINS equal bins over [lo, hi]; values outside (a metric over its declared
        range) count in the edge bins. Computed once per distribution."""
        counts, _ = np.histogram(np.clip(self.values, self.lo, self.hi), bins=HISTOGRAM_BINS,
                                 range=(self.lo, self.hi))
        return Histogram(self.column, self.lo, self.hi, [int(c) for c in counts], self.missing)


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
        metric_cols = "".join(f", n.{quote_ident(m.name)}" for m in metrics)
        self.rows = f"""
            SELECT {', '.join('n.' + c for c in FILE_COLUMNS)},
                   {cached_ensemble_sql(metrics)} AS ensemble,
                   coalesce(d.decision, 'undecided') AS decision{metric_cols}
            FROM {NORMALISED} n LEFT JOIN current_decisions d ON d.image_id = n.image_id
        """
        self.row_params = weight_vector(metrics, weights)   # the parameters of `rows`
        where, self.params = [], list(self.row_params)      # ... and of `filtered`
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
    # Two queries: the count never computes the ensemble unless a filter needs it, and is cheaper
    # than counting with a window over the ranked rows (measured at 100,000 images).
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


def distributions(con: duckdb.DuckDBPyConnection) -> dict[str, Distribution]:
    """Every cached metric's values over the dataset's ok images, fetched in one scan. They change
    only with the scores, so a caller keeps them per `cache_state(...).version`: histograms and
    percentiles then cost no query while the reviewer works."""
    state = cache_state(con)
    metrics = list(state.metrics) if state else []
    if not metrics:
        return {}
    table = con.cursor().execute(
        f"SELECT {', '.join(quote_ident(m.name) for m in metrics)} FROM {NORMALISED} WHERE status = 'ok'"
    ).fetchnumpy()
    return {m.name: Distribution.of(m.name, _array(table[m.name]), m) for m in metrics}


def ensemble_distribution(con: duckdb.DuckDBPyConnection, weights: Mapping[str, float] | None = None
                          ) -> Distribution:
    """The ensemble's values over the dataset's ok images under `weights`."""
    q = _Query(con, View(weights=weights or {}, status="ok"))
    values = con.cursor().execute(f"SELECT ensemble FROM ({q.filtered})", q.params).fetchnumpy()["ensemble"]
    return Distribution.of(ENSEMBLE, _array(values))


def image_row(con: duckdb.DuckDBPyConnection, image_id: int, weights: Mapping[str, float] | None = None
              ) -> dict[str, float | None]:
    """The image's ensemble under `weights` and every cached metric value (empty if unknown)."""
    q = _Query(con, View(weights=weights or {}))
    names = [ENSEMBLE] + [m.name for m in q.metrics]
    row = fetch_one(con.cursor(), f"SELECT {', '.join(quote_ident(c) for c in names)} FROM ({q.rows}) "
                                  "WHERE image_id = ?", [*q.row_params, int(image_id)])
    return {} if row is None else {c: _float(v) for c, v in zip(names, row)}


def values_of(row: Mapping[str, float | None], dists: Mapping[str, Distribution],
              columns: list[str]) -> list[Value]:
    """`columns` of an image's row, each with its percentile in its distribution."""
    return [Value(c, row.get(c), dists[c].percentile(row.get(c)) if c in dists else None)
            for c in columns if c in row]


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
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _array(values: np.ndarray) -> np.ndarray:
    """A fetched column as float64 with NaN for NULL (DuckDB returns masked arrays for NULLs)."""
    return np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)


def value_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many images have a value of each metric (a scorer that never ran has none), as of the
    last build of the normalised cache."""
    state = cache_state(con)
    return dict(state.counts) if state else {}
