"""Ranking: normalise every metric to 0..1 (1 = good) and take the weighted mean, in one SQL query.

A metric with a declared closed range is mapped linearly (clamped); an open one by its percentile
among the dataset's images. Lower-is-better metrics are flipped. The ensemble is the weighted mean
over the metrics an image has, so a scorer that did not run for an image does not drag it down.
"""
from __future__ import annotations

import json
from typing import Mapping

import duckdb
import pandas as pd

from storage.db import fetch_value, quote_ident
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


def scores_sql(metrics: list[MetricInfo], weights: Mapping[str, float]) -> str:
    """SELECT of one row per present image: path, status, error, size, every metric, `ensemble`."""
    metric_cols = "".join(f", s.{quote_ident(m.name)}" for m in metrics)
    norm_cols = "".join(f", {_normalised(m)} AS {quote_ident('_n_' + m.name)}" for m in metrics)
    raw_cols = "".join(f", {quote_ident(m.name)}" for m in metrics)
    return f"""
        WITH base AS (
            SELECT i.id AS image_id, i.path, i.status, i.error, i.width, i.height{metric_cols}
            FROM images i LEFT JOIN scores s ON s.image_id = i.id
            WHERE i.present
        ), normed AS (
            SELECT *{norm_cols} FROM base
        )
        SELECT image_id, path, status, error, width, height{raw_cols},
               CASE WHEN status = 'ok' THEN {_ensemble(metrics, weights)} END AS ensemble
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
    value = fetch_value(con.cursor(), "SELECT value FROM settings WHERE key = 'weights'")
    return {k: float(v) for k, v in json.loads(value).items()} if value else {}


def save_weights(con: duckdb.DuckDBPyConnection, weights: Mapping[str, float]) -> None:
    validate_weights(metric_catalogue(con), weights)
    con.cursor().execute(
        "INSERT INTO settings VALUES ('weights', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [json.dumps(dict(weights), sort_keys=True)],
    )
