"""Faults from outside: the dataset folder disappearing (deleted, moved, unmounted) while scoring or
while reviewing, and the disk filling up under the database and the thumbnails.

Each ends the scoring run with a message that says what happened and what to do, keeps every decision
and every committed score, and lets the same dataset carry on once the fault is gone, with nothing
scored twice. The full disk is a real one: a small tmpfs filled to the last byte (needs root, else
skipped); the unmount is a real `umount` of a tmpfs holding the dataset.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from curator import render
from curator.job import Progress, ScoringJob, create_scorers
from curator.session import ScoringOptions, Workspace
from storage import browse, decisions
from storage.db import connect
from tests.images import many_small
from tests.test_cli import fast_scorers

SCORERS = fast_scorers().split(",")


def mount_tmpfs(folder: Path, size: str) -> None:
    """Mount a fresh tmpfs of `size` on `folder`, or skip the test saying why it cannot."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], None]]:
    """`tmpfs(folder, size)` mounts a small tmpfs; whatever is still mounted is unmounted at the end."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> None:
        mount_tmpfs(folder, size)
        mounted.append(folder)

    yield mount
    for folder in reversed(mounted):
        unmount(folder)


def fill(folder: Path, name: str = "filler", leave: int = 0) -> Path:
    """Write a file into `folder` until the disk under it is full, then give back `leave` bytes."""
    path = folder / name
    with open(path, "wb", buffering=0) as fh:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
        fh.truncate(max(0, fh.tell() - leave))
    return path


def score(db: Path, root: Path) -> Progress:
    """One scoring run in the background, as the app runs it; returns its last progress."""
    con = connect(db)
    try:
        job = ScoringJob(con, root, create_scorers(SCORERS, "cpu"), batch_size=8)
        job.start()
        job.join()
        return job.progress
    finally:
        con.close()


def check_scored_once(db: Path, n: int) -> dict[int, str]:
    """Every image of the folder scored, by every scorer, exactly once; returns the decisions."""
    con = connect(db)
    try:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        assert q("SELECT status, count(*) FROM images WHERE present GROUP BY status") == [("ok", n)]
        assert q("SELECT count(*), count(DISTINCT image_id) FROM scores") == [(n, n)]
        assert q("SELECT count(*), count(DISTINCT (image_id, scorer)) FROM scorer_runs") == [(n * len(SCORERS),) * 2]
        return decisions.current(con)
    finally:
        con.close()


@pytest.mark.parametrize("how", ["moved away", "unmounted"])
def test_folder_disappearing_mid_scoring_stops_with_a_clear_message(tmp_path: Path, how: str, tmpfs) -> None:
    source, root, db = tmp_path / "source", tmp_path / "frames", tmp_path / "c.duckdb"
    many_small(source, 160)
    if how == "unmounted":
        tmpfs(root, "64m")
    shutil.copytree(source, root, dirs_exist_ok=True)
    decided: dict[int, str] = {}

    # The reviewer's decisions go through the job's own database connection, like the app's tabs.
    con = connect(db)
    job = ScoringJob(con, root, create_scorers(SCORERS, "cpu"), batch_size=8)

    def decide_then_vanish(p: Progress) -> None:
        if p.state == "scoring" and p.done >= 16 and not decided:
            decisions.decide(con, [1], "accepted", session="tab")
            decisions.decide(con, [2], "rejected", session="tab")
            decided.update({1: "accepted", 2: "rejected"})
            if how == "unmounted":
                unmount(root)
            else:
                root.rename(tmp_path / "elsewhere")

    job.start(decide_then_vanish)
    job.join()
    p = job.progress
    assert p.state == "failed" and 16 <= p.done < 160, p
    expected = ("is empty (an unmounted drive or share?)" if how == "unmounted"
                else "is gone (deleted, moved or unmounted)")
    assert p.message.startswith(f"dataset folder {root} {expected}: scoring stopped"), p.message
    assert "decisions so far are kept; resume scoring once it is back" in p.message
    assert "is gone" in render.progress_html(p) or "is empty" in render.progress_html(p)
    # Nothing was recorded as broken because it could not be read, and the decisions are there.
    assert con.execute("SELECT count(*) FROM images WHERE status = 'error'").fetchall() == [(0,)]
    committed = con.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchall()[0][0]
    assert 16 <= committed == p.done
    assert decisions.current(con) == decided
    con.close()

    # The folder comes back: the next run does exactly what was left, and nothing twice.
    if how == "unmounted":
        tmpfs(root, "64m")
        shutil.copytree(source, root, dirs_exist_ok=True)
    else:
        (tmp_path / "elsewhere").rename(root)
    again = score(db, root)
    assert (again.state, again.errors) == ("done", 0), again
    if how == "moved away":    # the same files: only those not committed are scored
        assert (again.total, again.unchanged) == (160 - committed, committed)
    assert check_scored_once(db, 160) == decided


def test_reviewing_goes_on_when_the_folder_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "shoot"
    many_small(root, 30)
    ws = Workspace(ScoringOptions(scorers=SCORERS, device="cpu", batch_size=8))
    ds = ws.open(root)
    ds.job.join(60)
    first = ds.page(browse.View(), 1)
    ids = [int(i) for i in first.page.rows["image_id"]]
    decisions.decide(ds.con, ids[:2], "accepted", session="tab")
    assert ds.problem() is None

    root.rename(tmp_path / "unplugged")
    problem = ds.problem()
    assert problem == (f"dataset folder {root} is gone (deleted, moved or unmounted). Reviewing goes on with the "
                       "thumbnails already made; decisions are kept.")
    assert "is gone" in render.progress_html(ds.progress(), problem)
    # The page still draws: thumbnails made before are served; an image never previewed gets the
    # placeholder tile, not an error.
    again = ds.page(browse.View(), 1)
    assert again.thumbnails == first.thumbnails and all(t.exists() for t in again.thumbnails)
    assert ds.preview(ids[5]) == ds.thumbs.placeholder(1024)
    decisions.decide(ds.con, [ids[2]], "rejected", session="tab")
    # Scoring again now fails at once, saying why; the problem is not said twice.
    assert ds.start_scoring()
    ds.job.join(60)
    p = ds.progress()
    assert p.state == "failed" and p.message.startswith(f"dataset folder {root} is gone"), p
    assert ds.problem() is None

    (tmp_path / "unplugged").rename(root)
    assert ds.problem() is None
    assert ds.start_scoring()
    ds.job.join(60)
    p = ds.progress()
    assert (p.state, p.total, p.unchanged) == ("done", 0, 30), p
    assert decisions.current(ds.con) == {ids[0]: "accepted", ids[1]: "accepted", ids[2]: "rejected"}
    ws.close()


def test_a_full_disk_stops_scoring_clearly_and_nothing_is_lost(tmp_path: Path, monkeypatch, tmpfs) -> None:
    data = tmp_path / "disk"
    tmpfs(data, "8m")
    monkeypatch.setenv("CURATOR_DATA_DIR", str(data))   # the database and the thumbnails
    root = tmp_path / "shoot"
    many_small(root, 120)
    ws = Workspace(ScoringOptions(scorers=SCORERS, device="cpu", batch_size=8))
    ds = ws.open(root)
    ds.job.join(60)
    assert ds.progress().state == "done" and str(ds.db_path).startswith(str(data))
    ids = [int(i) for i in ds.page(browse.View(), 1).page.rows["image_id"]]
    decisions.decide(ds.con, ids[:3], "accepted", session="tab")
    decisions.decide(ds.con, ids[3:5], "rejected", session="tab")
    before = decisions.current(ds.con)

    # New images arrive and the disk fills up before they are scored.
    many_small(root / "more", 120, start=120)
    filler = fill(data, leave=64 << 10)
    assert ds.start_scoring()
    ds.job.join(60)
    p = ds.progress()
    print(f"disk full after {p.done} of {p.total} new images")
    assert p.state == "failed" and p.total == 120 and p.done < p.total, p
    assert p.message.startswith("disk full: the database could not be written, scoring stopped."), p.message
    assert "free some space, then resume scoring" in p.message
    assert "disk full" in render.progress_html(p, ds.problem())

    # The app keeps serving: pages draw (thumbnails it cannot save are placeholders, and it says
    # why); a decision the disk refuses is refused whole, with a message, and loses nothing.
    fill(data, "filler2")
    view = browse.View(sort="path")
    last = ds.page(view, 99)
    assert ds.thumbs.placeholder(256) in last.thumbnails
    assert ds.problem() and "cannot save thumbnails" in ds.problem() and "No space left" in ds.problem()
    everything = [int(i) for i in ds.con.execute("SELECT id FROM images").fetchall() for i in i]
    with pytest.raises(decisions.NotSaved, match="the disk is full. Nothing was recorded"):
        decisions.decide(ds.con, everything, "rejected", session="tab")
    assert decisions.current(ds.con) == before

    # Space is freed: resuming finishes the new images, each scored once; everything is there.
    filler.unlink()
    (data / "filler2").unlink()
    assert ds.start_scoring()
    ds.job.join(60)
    p = ds.progress()
    assert p.state == "done", p
    decisions.decide(ds.con, [ids[5]], "rejected", session="tab")
    ds.page(view, 99)
    assert ds.problem() is None   # thumbnails are saved again
    ws.close()
    assert check_scored_once(ds.db_path, 240) == {**before, ids[5]: "rejected"}
