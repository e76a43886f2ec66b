"""Review decisions: an append-only log, so nothing a person decided is ever overwritten or lost.

Each call appends one action (one or many images) in a single transaction. Undo appends a new action
restoring what each image had before the undone one; concurrent tabs each append their own rows, so
neither loses the other's work.
"""
from __future__ import annotations

from typing import Iterable

import duckdb
import pandas as pd

from storage.db import disk_full, fetch_value, transaction

DECISIONS = ("accepted", "rejected", "undecided")


class NotSaved(RuntimeError):
    """The database refused the write (e.g. a full disk): nothing of this action was recorded, and
    every earlier decision is still there."""


def _not_saved(what: str, error: Exception) -> str:
    if disk_full(error):
        return (f"Could not save {what}: the disk is full. Nothing was recorded and earlier decisions are kept; "
                "free some space and try again.")
    return f"Could not save {what} ({type(error).__name__}: {error}). Nothing was recorded; earlier decisions are kept."


def decide(con: duckdb.DuckDBPyConnection, image_ids: Iterable[int], decision: str,
           session: str | None = None, note: str | None = None) -> int | None:
    """Record `decision` for every image in one action; returns the action id (None if no images)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        return None
    cur = con.cursor()
    try:
        with transaction(cur):
            action = fetch_value(cur, "SELECT nextval('action_ids')")
            cur.register("decide_rows", pd.DataFrame({"image_id": ids}))
            cur.execute(
                "INSERT INTO decisions (action, image_id, decision, session, note) "
                "SELECT ?, image_id, ?, ?, ? FROM decide_rows",
                [action, decision, session, note],
            )
    except duckdb.Error as e:
        raise NotSaved(_not_saved("the decision", e)) from e
    finally:
        cur.close()
    return action


def undo(con: duckdb.DuckDBPyConnection, session: str | None = None) -> list[int]:
    """Revert the newest action not yet undone (of `session`, if given); returns the image ids touched."""
    cur = con.cursor()
    try:
        with transaction(cur):
            target = fetch_value(
                cur,
                """
                SELECT max(d.action) FROM decisions d
                WHERE d.undoes IS NULL
                  AND d.action NOT IN (SELECT undoes FROM decisions WHERE undoes IS NOT NULL)
                  AND (? IS NULL OR d.session = ?)
                """,
                [session, session],
            )
            if target is None:
                return []
            restored = cur.execute(
                """
                SELECT t.image_id,
                       coalesce((SELECT arg_max(p.decision, p.id) FROM decisions p
                                 WHERE p.image_id = t.image_id AND p.id < t.id), 'undecided') AS decision
                FROM decisions t WHERE t.action = ?
                """,
                [target],
            ).df()
            action = fetch_value(cur, "SELECT nextval('action_ids')")
            cur.register("undo_rows", restored)
            cur.execute(
                "INSERT INTO decisions (action, image_id, decision, session, undoes, note) "
                "SELECT ?, image_id, decision, ?, ?, 'undo' FROM undo_rows",
                [action, session, target],
            )
    except duckdb.Error as e:
        raise NotSaved(_not_saved("the undo", e)) from e
    finally:
        cur.close()
    return [int(i) for i in restored["image_id"]]


def current(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """The decision of every image that has one (images never decided are 'undecided')."""
    rows = con.cursor().execute("SELECT image_id, decision FROM current_decisions").fetchall()
    return {int(i): d for i, d in rows}


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """accepted / rejected / undecided counts over the images present in the dataset."""
    rows = con.cursor().execute(
        """
        SELECT coalesce(c.decision, 'undecided') AS d, count(*) FROM images i
        LEFT JOIN current_decisions c ON c.image_id = i.id
        WHERE i.present GROUP BY d
        """
    ).fetchall()
    out = dict.fromkeys(DECISIONS, 0)
    out.update({d: int(n) for d, n in rows})
    return out
