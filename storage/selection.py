"""Queries behind dedupe, selection and export: stored vectors, who decided what, and export rows.

Automated proposals (selection strategies, "keep best of each cluster") write decisions under a
session starting with one of `AUTOMATED_SESSIONS`; everything else is a person's own decision, which
no proposal may override. Keeping that rule in one SQL expression here means every caller agrees on it.
"""
from __future__ import annotations

from typing import Iterable

import duckdb
import numpy as np
import pandas as pd

AUTOMATED_SESSIONS = ("selection:", "dedupe:")
_BY_PERSON = " AND ".join(f"coalesce(session, '') NOT LIKE '{p}%'" for p in AUTOMATED_SESSIONS)


def vectors(con: duckdb.DuckDBPyConnection, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(image ids int64[n], vectors float32[n, d]) of present, decodable images with a `model` vector.

    Read through Arrow so 100,000 vectors arrive as one flat buffer instead of 100,000 Python lists.
    Rows whose length differs from the most common one (a model changed its size) are left out.
    """
    table = con.cursor().sql(
        "SELECT e.image_id, e.vector FROM embeddings e JOIN images i ON i.id = e.image_id "
        "WHERE e.model = $model AND i.present AND i.status = 'ok' ORDER BY e.image_id",
        params={"model": model},
    ).to_arrow_table()
    ids = table.column("image_id").to_numpy().astype(np.int64)
    if len(ids) == 0:
        return ids, np.zeros((0, 0), np.float32)
    column = table.column("vector").combine_chunks()
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    dim = int(np.bincount(lengths).argmax())
    if (lengths == dim).all():
        return ids, flat.reshape(len(ids), dim)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keep = np.flatnonzero(lengths == dim)
    return ids[keep], np.stack([flat[starts[k]:starts[k] + dim] for k in keep])


def review_state(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every image with a decision: image_id, decision, session, by_person (False for proposals)."""
    return con.cursor().execute(
        f"""
        SELECT image_id, decision, session, {_BY_PERSON} AS by_person FROM (
            SELECT image_id, arg_max(decision, id) AS decision, arg_max(session, id) AS session
            FROM decisions GROUP BY image_id
        )
        """
    ).df().astype({"image_id": "int64", "by_person": bool})


def accepted_ids(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Present, decodable images whose current decision is 'accepted', by path."""
    rows = con.cursor().execute(
        "SELECT i.id FROM images i JOIN current_decisions c ON c.image_id = i.id "
        "WHERE i.present AND i.status = 'ok' AND c.decision = 'accepted' ORDER BY i.path"
    ).fetchall()
    return [int(r[0]) for r in rows]


def image_files(con: duckdb.DuckDBPyConnection, image_ids: Iterable[int]) -> pd.DataFrame:
    """image_id, path, sha256, format, width, height, present, status and current decision of the ids."""
    ids = pd.DataFrame({"image_id": sorted({int(i) for i in image_ids})}, dtype="int64")
    cur = con.cursor()
    cur.register("wanted_ids", ids)
    return cur.execute(
        """
        SELECT w.image_id, i.path, i.sha256, i.format, i.width, i.height, i.present, i.status,
               coalesce(c.decision, 'undecided') AS decision
        FROM wanted_ids w JOIN images i ON i.id = w.image_id
        LEFT JOIN current_decisions c ON c.image_id = w.image_id
        ORDER BY i.path
        """
    ).df()


def vectors_signature(con: duckdb.DuckDBPyConnection) -> str:
    """Changes whenever stored vectors may have: a scoring run wrote, or images came or went. Lets the
    dashboard keep its near-duplicate index between slider moves and rebuild it only then."""
    row = con.cursor().execute(
        "SELECT (SELECT count(*) FROM embeddings), (SELECT max(scored_at) FROM scorer_runs), "
        "(SELECT count(*) FROM images WHERE present AND status = 'ok')"
    ).fetchall()[0]
    return ":".join(str(v) for v in row)
