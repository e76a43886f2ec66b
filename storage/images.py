"""The images table: syncing it with a folder scan, and the work list for a scoring run."""
from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pandas as pd

from storage.db import fetch_value, transaction


@dataclass(frozen=True)
class SyncSummary:
    total: int
    new: int
    changed: int
    missing: int


@dataclass
class WorkItem:
    """An image some active scorer still has to score; `runs` maps scorer -> (version, sha256) done."""

    image_id: int
    path: str
    sha256: str | None
    status: str
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)


# A scanned file differs from its row when its size or mtime moved, or when the scan itself now
# rejects it for a new reason. Scan rejections carry no size, so a file the scan rejected before and
# accepts now differs by size; a decode error recorded on unchanged bytes is not retried.
_CHANGED = ("{i}.bytes IS DISTINCT FROM s.bytes OR {i}.mtime IS DISTINCT FROM s.mtime "
            "OR (s.error IS NOT NULL AND {i}.error IS DISTINCT FROM s.error)")


def sync_scan(con: duckdb.DuckDBPyConnection, scanned: pd.DataFrame) -> SyncSummary:
    """Bring `images` in line with a scan (columns path, bytes, mtime, error), in one transaction.

    New paths are added as pending; a changed size or mtime makes a file pending again (its content
    hash is re-checked before anything is re-scored); paths no longer found are kept, with their
    scores and decisions, but marked not present. Files the scan itself rejected carry its reason.
    """
    cur = con.cursor()
    cur.register("scan_rows", scanned[["path", "bytes", "mtime", "error"]])
    try:
        with transaction(cur):
            new = fetch_value(
                cur, "SELECT count(*) FROM scan_rows s WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.path = s.path)")
            changed = fetch_value(
                cur,
                f"SELECT count(*) FROM scan_rows s JOIN images i ON i.path = s.path WHERE {_CHANGED.format(i='i')}",
            )
            cur.execute(
                f"""
                UPDATE images SET bytes = s.bytes, mtime = s.mtime,
                    status = CASE WHEN s.error IS NOT NULL THEN 'error' ELSE 'pending' END, error = s.error
                FROM scan_rows s
                WHERE images.path = s.path AND ({_CHANGED.format(i='images')})
                """
            )
            cur.execute(
                """
                INSERT INTO images (path, bytes, mtime, status, error)
                SELECT s.path, s.bytes, s.mtime, CASE WHEN s.error IS NOT NULL THEN 'error' ELSE 'pending' END, s.error
                FROM scan_rows s WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.path = s.path)
                """
            )
            cur.execute(
                "UPDATE images SET present = (path IN (SELECT path FROM scan_rows)) "
                "WHERE present <> (path IN (SELECT path FROM scan_rows))"
            )
            missing = fetch_value(cur, "SELECT count(*) FROM images WHERE NOT present")
    finally:
        cur.close()
    return SyncSummary(total=len(scanned), new=int(new), changed=int(changed), missing=int(missing))


def work_list(con: duckdb.DuckDBPyConnection, versions: dict[str, str]) -> list[WorkItem]:
    """Present images that are pending, or lack a run of some scorer in `versions` at that version
    for their current content hash. Images recorded as broken are not retried until they change."""
    rows = con.cursor().execute(
        """
        SELECT i.id, i.path, i.sha256, i.status,
               list(r.scorer) FILTER (WHERE r.scorer IS NOT NULL),
               list(r.version) FILTER (WHERE r.scorer IS NOT NULL),
               list(r.sha256) FILTER (WHERE r.scorer IS NOT NULL)
        FROM images i LEFT JOIN scorer_runs r ON r.image_id = i.id
        WHERE i.present AND i.status <> 'error'
        GROUP BY ALL ORDER BY i.path
        """
    ).fetchall()
    items = []
    for image_id, path, sha, status, scorers, vers, shas in rows:
        runs = {s: (v, h) for s, v, h in zip(scorers or [], vers or [], shas or [])}
        done = status == "ok" and sha is not None and all(
            runs.get(name) == (version, sha) for name, version in versions.items()
        )
        if not done:
            items.append(WorkItem(int(image_id), path, sha, status, runs))
    return items


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Present images by status (ok / error / pending)."""
    rows = con.cursor().execute("SELECT status, count(*) FROM images WHERE present GROUP BY status").fetchall()
    out = {"ok": 0, "error": 0, "pending": 0}
    out.update({s: int(n) for s, n in rows})
    return out
