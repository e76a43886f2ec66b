"""Opening a Curator database and keeping its schema current.

One DuckDB file per dataset. Migrations are numbered SQL scripts applied in order inside a
transaction, so a database from an older Curator opens in a newer one and a crash mid-migration
leaves the old schema intact.
"""
from __future__ import annotations

import errno
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb

MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE SEQUENCE image_ids START 1;
    CREATE TABLE images (
        id BIGINT PRIMARY KEY DEFAULT nextval('image_ids'),
        path VARCHAR NOT NULL UNIQUE,      -- relative to the dataset root, '/' separators
        sha256 VARCHAR,                    -- NULL until read; reset when size or mtime change
        width INTEGER, height INTEGER,     -- after EXIF orientation
        bytes BIGINT, mtime DOUBLE, format VARCHAR,
        status VARCHAR NOT NULL DEFAULT 'pending',   -- pending | ok | error
        error VARCHAR,
        present BOOLEAN NOT NULL DEFAULT TRUE,       -- false once the file left the folder
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    -- Catalogue of metrics as scorers declare them; scores has one DOUBLE column per metric.
    CREATE TABLE metrics (
        name VARCHAR PRIMARY KEY, scorer VARCHAR NOT NULL, min DOUBLE, max DOUBLE,
        higher_is_better BOOLEAN NOT NULL, default_weight DOUBLE NOT NULL, description VARCHAR
    );
    CREATE TABLE scores (image_id BIGINT PRIMARY KEY);
    -- One row per (image, scorer) once that scorer finished the image: the resume/incremental marker.
    CREATE TABLE scorer_runs (
        image_id BIGINT NOT NULL, scorer VARCHAR NOT NULL, version VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL, error VARCHAR, scored_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (image_id, scorer)
    );
    -- Append-only review log: the newest row per image is its decision. Rows written together share
    -- an action id (one click, or one bulk action); undo appends an action that restores the previous
    -- decisions and names the action it undoes in `undoes`.
    CREATE SEQUENCE decision_ids START 1;
    CREATE SEQUENCE action_ids START 1;
    CREATE TABLE decisions (
        id BIGINT PRIMARY KEY DEFAULT nextval('decision_ids'),
        action BIGINT NOT NULL,
        image_id BIGINT NOT NULL,
        decision VARCHAR NOT NULL,         -- accepted | rejected | undecided
        decided_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        session VARCHAR,                   -- who acted (browser session, 'cli', 'selection:<strategy>')
        undoes BIGINT,                     -- for undo actions: the action they revert
        note VARCHAR
    );
    CREATE VIEW current_decisions AS
        SELECT image_id, arg_max(decision, id) AS decision, max(decided_at) AS decided_at
        FROM decisions GROUP BY image_id;
    CREATE TABLE embeddings (
        image_id BIGINT NOT NULL, model VARCHAR NOT NULL, vector FLOAT[] NOT NULL,
        PRIMARY KEY (image_id, model)
    );
    CREATE TABLE settings (key VARCHAR PRIMARY KEY, value VARCHAR);  -- JSON values
    """,
)


class DatabaseError(RuntimeError):
    """The database cannot be opened or is from a newer Curator."""


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) a Curator database and migrate it to the current schema."""
    path = Path(path)
    if read_only and not path.exists():
        raise DatabaseError(f"no database at {path}")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as e:
        raise DatabaseError(f"cannot open database {path}: {e}") from e
    version = schema_version(con)
    if version > len(MIGRATIONS):
        con.close()
        raise DatabaseError(f"{path} has schema {version}, newer than this Curator ({len(MIGRATIONS)})")
    if version < len(MIGRATIONS):
        if read_only:
            con.close()
            raise DatabaseError(f"{path} needs a schema upgrade; open it once read-write")
        migrate(con, version)
    return con


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = fetch_value(
        con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' AND table_schema = 'main'")
    if not exists:
        return 0
    value = fetch_value(con, "SELECT value FROM meta WHERE key = 'schema_version'")
    return int(value) if value else 0


def migrate(con: duckdb.DuckDBPyConnection, from_version: int) -> None:
    for number, script in enumerate(MIGRATIONS[from_version:], start=from_version + 1):
        with transaction(con):
            con.execute(script)
            con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [str(number)],
            )


@contextmanager
def transaction(cur: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN on `cur`, COMMIT when the block ends, ROLLBACK if it raises; the block's own error is
    the one raised. A COMMIT that fails (a full disk refusing the write-ahead log) has already ended
    the transaction, and a ROLLBACK then would only hide that error behind "no transaction is active"."""
    cur.execute("BEGIN TRANSACTION")
    try:
        yield cur
        cur.execute("COMMIT")
    except BaseException:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error:
            pass  # nothing left to roll back; the error being raised says what went wrong
        raise


def disk_full(error: BaseException) -> bool:
    """Whether `error` (an OSError, or DuckDB's wording of one) means the disk or quota is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text


def get_setting(con: duckdb.DuckDBPyConnection, key: str) -> Any:
    """A setting stored with the dataset (JSON), or None."""
    value = fetch_value(con.cursor(), "SELECT value FROM settings WHERE key = ?", [key])
    return None if value is None else json.loads(value)


def set_setting(con: duckdb.DuckDBPyConnection, key: str, value: Any) -> None:
    """Store a setting with the dataset; None removes it."""
    cur = con.cursor()
    if value is None:
        cur.execute("DELETE FROM settings WHERE key = ?", [key])
    else:
        cur.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, json.dumps(value)])


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    return fetch_value(con, "SELECT value FROM meta WHERE key = ?", [key])


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value]
    )


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """The first row of a query, with its result consumed: DuckDB 2 refuses further work on a
    connection whose last result was only partly fetched (as `fetchone()` leaves it)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def fetch_value(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """The first column of the first row, or None."""
    row = fetch_one(con, sql, params)
    return row[0] if row else None


def quote_ident(name: str) -> str:
    """Quote an identifier for SQL; metric names are validated lower_snake_case, this is belt and braces."""
    return '"' + name.replace('"', '""') + '"'
