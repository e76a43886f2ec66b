"""Metric catalogue and score writes.

`scores` is wide (one DOUBLE column per metric) so ranking reads it without a pivot; a new metric
adds a column. Each batch of results is written in one transaction together with its
`scorer_runs` markers, so a kill loses at most the batch in flight and never leaves half of one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import duckdb
import numpy as np
import pandas as pd

from storage.db import quote_ident, transaction


@dataclass(frozen=True)
class MetricInfo:
    name: str
    scorer: str
    min: float | None
    max: float | None
    higher_is_better: bool
    default_weight: float
    description: str = ""


@dataclass
class ImageResult:
    """Everything one run learned about one image. `status` 'error' means it could not be decoded."""

    image_id: int
    sha256: str | None
    status: str
    error: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)   # scorer -> metric -> value
    scorer_errors: dict[str, str] = field(default_factory=dict)                # scorer -> reason
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)            # model -> vector


def sync_metrics(con: duckdb.DuckDBPyConnection, metrics: Iterable[MetricInfo]) -> bool:
    """Make the catalogue and the `scores` columns match the declared metrics; True if anything changed."""
    cur = con.cursor()
    existing = {r[0]: r for r in cur.execute(
        "SELECT name, scorer, min, max, higher_is_better, default_weight, description FROM metrics").fetchall()}
    columns = {r[0] for r in cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'scores'").fetchall()}
    changed = False
    for m in metrics:
        row = (m.name, m.scorer, m.min, m.max, m.higher_is_better, m.default_weight, m.description)
        if existing.get(m.name) != row:
            cur.execute(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "scorer = excluded.scorer, min = excluded.min, max = excluded.max, "
                "higher_is_better = excluded.higher_is_better, default_weight = excluded.default_weight, "
                "description = excluded.description",
                list(row),
            )
            changed = True
        if m.name not in columns:
            cur.execute(f"ALTER TABLE scores ADD COLUMN {quote_ident(m.name)} DOUBLE")
            changed = True
    cur.close()
    return changed


def metric_catalogue(con: duckdb.DuckDBPyConnection) -> list[MetricInfo]:
    rows = con.cursor().execute(
        "SELECT name, scorer, min, max, higher_is_better, default_weight, description FROM metrics ORDER BY rowid"
    ).fetchall()
    return [MetricInfo(*r) for r in rows]


def write_results(con: duckdb.DuckDBPyConnection, results: list[ImageResult],
                  versions: Mapping[str, str], metric_names: Mapping[str, tuple[str, ...]]) -> None:
    """Write one batch atomically: image rows, every scorer's metric columns, run markers, embeddings."""
    if not results:
        return
    cur = con.cursor()
    try:
        with transaction(cur):
            images = pd.DataFrame([{
                "image_id": r.image_id, "sha256": r.sha256, "status": r.status, "error": r.error,
                "width": r.width, "height": r.height, "format": r.format,
            } for r in results]).astype({"width": "Int64", "height": "Int64"})
            cur.register("result_images", images)
            cur.execute(
                "UPDATE images SET sha256 = r.sha256, status = r.status, error = r.error, "
                "width = coalesce(r.width, images.width), height = coalesce(r.height, images.height), "
                "format = coalesce(r.format, images.format) FROM result_images r WHERE images.id = r.image_id"
            )
            ran = [(r, tuple(s for s in metric_names if s in r.scores or s in r.scorer_errors)) for r in results]
            groups: dict[tuple[str, ...], list[ImageResult]] = {}
            for r, scorers in ran:
                if scorers:
                    groups.setdefault(scorers, []).append(r)
            for scorers, group in groups.items():   # usually one group: every scorer ran on every image
                _write_scores(cur, group, {s: metric_names[s] for s in scorers})
            _write_runs(cur, [(r, s) for r, scorers in ran for s in scorers], versions)
            vectors = [(r.image_id, model, np.asarray(v, np.float32).ravel().tolist())
                       for r in results for model, v in r.embeddings.items()]
            if vectors:
                cur.register("result_vectors", pd.DataFrame(vectors, columns=["image_id", "model", "vector"]))
                cur.execute(
                    "INSERT INTO embeddings SELECT image_id, model, vector::FLOAT[] FROM result_vectors "
                    "ON CONFLICT (image_id, model) DO UPDATE SET vector = excluded.vector"
                )
    finally:
        cur.close()


def _write_scores(cur: duckdb.DuckDBPyConnection, results: list[ImageResult],
                  metric_names: Mapping[str, tuple[str, ...]]) -> None:
    """One upsert of the metric columns of `metric_names`' scorers, which all ran on every image of
    `results` (a scorer that failed on an image clears its columns there)."""
    columns = [(scorer, n) for scorer, names in metric_names.items() for n in names]
    if not columns:   # scorers may declare no metrics and only leave embeddings (the perceptual hash)
        return
    names = [n for _, n in columns]
    table = pd.DataFrame(
        [[r.image_id] + [_finite(r.scores.get(scorer, {}).get(n)) for scorer, n in columns] for r in results],
        columns=["image_id", *names],
    ).astype({n: "float64" for n in names})
    cur.register("result_scores", table)
    cols = ", ".join(quote_ident(n) for n in names)
    updates = ", ".join(f"{quote_ident(n)} = excluded.{quote_ident(n)}" for n in names)
    cur.execute(
        f"INSERT INTO scores (image_id, {cols}) SELECT image_id, {cols} FROM result_scores "
        f"ON CONFLICT (image_id) DO UPDATE SET {updates}"
    )


def _write_runs(cur: duckdb.DuckDBPyConnection, ran: list[tuple[ImageResult, str]], versions: Mapping[str, str]
                ) -> None:
    """Mark each (image, scorer) as scored at the scorer's version for the image's content."""
    if not ran:
        return
    runs = pd.DataFrame({
        "image_id": [r.image_id for r, _ in ran],
        "scorer": [s for _, s in ran],
        "version": [versions[s] for _, s in ran],
        "sha256": [r.sha256 for r, _ in ran],
        "error": [r.scorer_errors.get(s) for r, s in ran],
    })
    cur.register("result_runs", runs)
    cur.execute(
        "INSERT INTO scorer_runs (image_id, scorer, version, sha256, error) "
        "SELECT image_id, scorer, version, sha256, error FROM result_runs "
        "ON CONFLICT (image_id, scorer) DO UPDATE SET version = excluded.version, sha256 = excluded.sha256, "
        "error = excluded.error, scored_at = now()"
    )


def _finite(value: float | None) -> float | None:
    """NaN and inf are stored as NULL: a metric that could not be computed is absent, not extreme."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None
