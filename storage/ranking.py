"""Ranking: normalise every metric to 0..1 (1 = good) and take the weighted mean, in one SQL query.

A metric with a declared closed range is mapped linearly (clamped); an open one by its percentile
among the dataset's images. Lower-is-better metrics are flipped. The ensemble is the weighted mean
over the metrics an image has, so a scorer that did not run for an image does not drag it down.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Mapping

import duckdb
import pandas as pd

from storage.db import fetch_one, get_setting, quote_ident, set_setting, transaction
from storage.scores import MetricInfo, metric_catalogue

VIEW = "image_scores"


def default_weights(metrics: list[MetricInfo]) -> dict[str, float]:
    return {m.name: m.default_weight for m in metrics}


def _normalised(m: MetricInfo) -> str:
    col = quote_ident(m.name)
    if m.min is not None and m.max is not None:
        # least/greatest skip NULLs in DuckDB, so a missing value must stay NULL explicitly.
        n = (f"CASE WHEN {col} IS NULL THEN NULL ELSE "
             f"(least(greatest({col}, {m.min!r}), {m.max!r}) - {m.min!r}) / {m.max - m.min!r} END")
    else:
        n = (f"CASE WHEN {col} IS NULL THEN NULL ELSE "
             f"percent_rank() OVER (PARTITION BY {col} IS NULL ORDER BY {col}) END")
    return n if m.higher_is_better else f"1 - ({n})"


def _ensemble(metrics: list[MetricInfo], weights: Mapping[str, float]) -> str:
    used = [(m, float(weights.get(m.name, 0.0))) for m in metrics if float(weights.get(m.name, 0.0)) > 0]
    if not used:
        return "CAST(NULL AS DOUBLE)"
    num = " + ".join(f"{w!r} * coalesce({quote_ident('_n_' + m.name)}, 0)" for m, w in used)
    den = " + ".join(f"{w!r} * CAST({quote_ident('_n_' + m.name)} IS NOT NULL AS INTEGER)" for m, w in used)
    return f"({num}) / nullif({den}, 0)"


def normalised_sql(metrics: list[MetricInfo]) -> str:
    """SELECT of one row per present image: ids, file columns, every raw metric and `_n_<metric>`,
    its normalised value (0..1, 1 = good). The part of ranking that does not depend on weights."""
    metric_cols = "".join(f", s.{quote_ident(m.name)}" for m in metrics)
    norm_cols = "".join(f", {_normalised(m)} AS {quote_ident('_n_' + m.name)}" for m in metrics)
    return f"""
        WITH base AS (
            SELECT i.id AS image_id, i.path, i.status, i.error, i.width, i.height, i.sha256{metric_cols}
            FROM images i LEFT JOIN scores s ON s.image_id = i.id
            WHERE i.present
        )
        SELECT *{norm_cols} FROM base
    """


def ensemble_sql(metrics: list[MetricInfo], weights: Mapping[str, float]) -> str:
    """SQL expression of the ensemble over `_n_<metric>` columns (NULL for images not scored ok)."""
    return f"CASE WHEN status = 'ok' THEN {_ensemble(metrics, weights)} END"


def scores_sql(metrics: list[MetricInfo], weights: Mapping[str, float]) -> str:
    """SELECT of one row per present image: path, status, error, size, every metric, `ensemble`."""
    raw_cols = "".join(f", {quote_ident(m.name)}" for m in metrics)
    return f"""
        WITH normed AS ({normalised_sql(metrics)})
        SELECT image_id, path, status, error, width, height{raw_cols},
               {ensemble_sql(metrics, weights)} AS ensemble
        FROM normed
    """


def refresh_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the `image_scores` view for the current metric catalogue and default weights."""
    metrics = metric_catalogue(con)
    con.cursor().execute(f"CREATE OR REPLACE VIEW {VIEW} AS {scores_sql(metrics, default_weights(metrics))}")


def validate_weights(metrics: list[MetricInfo], weights: Mapping[str, float]) -> dict[str, float]:
    """Weights for known metrics, each >= 0; unknown names raise with the list of known ones."""
    known = {m.name for m in metrics}
    out = {}
    for name, w in weights.items():
        if name not in known:
            raise ValueError(f"unknown metric {name!r} in weights (known: {', '.join(sorted(known))})")
        if not float(w) >= 0:
            raise ValueError(f"weight for {name!r} must be >= 0, not {w!r}")
        out[name] = float(w)
    return out


def ranked(con: duckdb.DuckDBPyConnection, weights: Mapping[str, float] | None = None,
           limit: int | None = None, offset: int = 0, include_errors: bool = False) -> pd.DataFrame:
    """Images best first under `weights` (metric -> weight; metrics not named keep their default)."""
    metrics = metric_catalogue(con)
    w = default_weights(metrics)
    w.update(validate_weights(metrics, weights or {}))
    where = "" if include_errors else "WHERE status = 'ok'"
    page = f"LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    sql = f"SELECT * FROM ({scores_sql(metrics, w)}) {where} ORDER BY ensemble DESC NULLS LAST, path {page}"
    return con.cursor().execute(sql).df()


def saved_weights(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """The user's weights saved with the dataset (empty if none)."""
    return {k: float(v) for k, v in (get_setting(con, "weights") or {}).items()}


def save_weights(con: duckdb.DuckDBPyConnection, weights: Mapping[str, float]) -> None:
    validate_weights(metric_catalogue(con), weights)
    set_setting(con, "weights", dict(sorted(weights.items())))


# -- the normalised cache ----------------------------------------------------------------------------
# Normalising open-range metrics takes a percent_rank window per metric over every image (about a
# second for 10 such metrics at 100,000 images), but it does not depend on the weights. The dashboard
# therefore materialises `normalised_sql` once per change of the scores into a table of an in-memory
# database attached to the connection (shared by all its cursors, never written to the file) and
# re-ranks by computing only the weighted mean over it. The table also holds each image's normalised
# values as one fixed-size array (missing = 0) and a matching 0/1 array of which it has, so the
# weighted mean is two array dot products with the weights as one parameter: about 25 ms at 100,000
# images and 36 metrics, where the same mean as a 36-term SQL expression takes about 120 ms.

CACHE_DB = "curator_rank_cache"
NORMALISED = f"{CACHE_DB}.normalised"
_build_lock = threading.Lock()
_attach_lock = threading.Lock()


@dataclass(frozen=True)
class CacheState:
    version: str                      # `scores_version` the table was built from
    built_at: float                   # time.time() when built
    seconds: float                    # how long the build took
    metrics: tuple[MetricInfo, ...]   # the metrics the table has columns for, as catalogued then
    counts: dict[str, int]            # images with a value, per metric (0: no scorer produced it yet)


def _vector_columns(metrics: list[MetricInfo]) -> str:
    if not metrics:
        return ""
    cols = [quote_ident("_n_" + m.name) for m in metrics]
    k = len(metrics)
    return (f", [{', '.join(f'coalesce({c}, 0)' for c in cols)}]::DOUBLE[{k}] AS _nv"
            f", [{', '.join(f'CAST({c} IS NOT NULL AS DOUBLE)' for c in cols)}]::DOUBLE[{k}] AS _mv")


def cached_ensemble_sql(metrics: list[MetricInfo]) -> str:
    """The ensemble over the normalised table: the same weighted mean as `ensemble_sql`, taking the
    weights as one `?` parameter, a list in the order of `metrics` (see `weight_vector`)."""
    if not metrics:
        return "CAST(NULL AS DOUBLE)"
    k = len(metrics)
    return (f"CASE WHEN status = 'ok' THEN array_inner_product(_nv, ?::DOUBLE[{k}]) / "
            f"nullif(array_inner_product(_mv, ?::DOUBLE[{k}]), 0) END")


def weight_vector(metrics: list[MetricInfo], weights: Mapping[str, float]) -> list[list[float]]:
    """The parameters of `cached_ensemble_sql`: every metric's weight (default where not given)."""
    vector = [float(weights.get(m.name, m.default_weight)) for m in metrics]
    return [vector, vector] if metrics else []


_VERSION_SQL = """
    SELECT (SELECT count(*) FROM scorer_runs), (SELECT max(scored_at) FROM scorer_runs),
           (SELECT count(*) FILTER (WHERE present) FROM images),
           (SELECT count(*) FILTER (WHERE present AND status = 'ok') FROM images),
           (SELECT count(*) FILTER (WHERE present AND status = 'error') FROM images),
           (SELECT max(id) FROM images),
           (SELECT string_agg(name, ',' ORDER BY name) FROM metrics)
"""


def scores_version(con: duckdb.DuckDBPyConnection) -> str:
    """A cheap fingerprint of everything the normalised values depend on: changes whenever a batch of
    scores is written, an image's status or presence changes, or the metric catalogue changes."""
    return _version(con.cursor())


def _version(cur: duckdb.DuckDBPyConnection) -> str:
    return "|".join(str(v) for v in fetch_one(cur, _VERSION_SQL))


def cache_state(con: duckdb.DuckDBPyConnection) -> CacheState | None:
    """The state of the normalised table, or None if it was never built on this connection."""
    cur = con.cursor()
    try:
        row = fetch_one(cur, f"SELECT version, built_at, seconds, metrics, counts FROM {CACHE_DB}.state")
    except duckdb.CatalogException:   # first use on this connection: attach the cache database
        # Under a lock: two threads creating the table at once make DuckDB refuse one of them
        # ("Catalog write-write conflict"), seen as a traceback when two browser tabs first load.
        with _attach_lock:
            cur = con.cursor()
            cur.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {CACHE_DB}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {CACHE_DB}.state "
                        "(version VARCHAR, built_at DOUBLE, seconds DOUBLE, metrics VARCHAR, counts VARCHAR)")
        return None
    if row is None:
        return None
    version, built_at, seconds, metrics, counts = row
    return CacheState(version, built_at, seconds, tuple(MetricInfo(**m) for m in json.loads(metrics)),
                      json.loads(counts))


def refresh_normalised(con: duckdb.DuckDBPyConnection) -> CacheState:
    """Rebuild the normalised table from one consistent snapshot of the scores."""
    cache_state(con)  # attaches the cache database
    started = time.time()
    cur = con.cursor()
    try:
        with transaction(cur):
            version = _version(cur)  # on this cursor: the same snapshot as the build below
            metrics = metric_catalogue(con)
            cur.execute(f"CREATE OR REPLACE TABLE {NORMALISED} AS SELECT *{_vector_columns(metrics)} "
                        f"FROM ({normalised_sql(metrics)})")
            found = fetch_one(cur, f"SELECT count(*){''.join(f', count({quote_ident(m.name)})' for m in metrics)} "
                                   f"FROM {NORMALISED}")
            counts = {m.name: int(n) for m, n in zip(metrics, found[1:])}
            state = CacheState(version, time.time(), time.time() - started, tuple(metrics), counts)
            cur.execute(f"DELETE FROM {CACHE_DB}.state")
            cur.execute(f"INSERT INTO {CACHE_DB}.state VALUES (?, ?, ?, ?, ?)",
                        [state.version, state.built_at, state.seconds, json.dumps([asdict(m) for m in metrics]),
                         json.dumps(counts)])
    finally:
        cur.close()
    return state


def ensure_normalised(con: duckdb.DuckDBPyConnection, max_staleness: float = 0.0) -> CacheState:
    """Make sure the normalised table exists and reflects the scores, but keep a stale one that is
    younger than `max_staleness` seconds: while a scoring job writes a batch every second, the
    dashboard re-ranks over slightly old normalisations rather than rebuilding on every slider move.
    Decisions are never cached, so they always show at once."""
    state = cache_state(con)
    if state is not None and time.time() - state.built_at < max_staleness:
        return state
    with _build_lock:
        state = cache_state(con)
        if state is None or state.version != scores_version(con):
            state = refresh_normalised(con)
    return state
