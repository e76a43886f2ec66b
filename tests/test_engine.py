"""The scoring job end to end on real files and a real DuckDB file: incremental, resumable, robust."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import pytest

from curator.job import ScoringJob
from scorers.base import DecodedImage, Metric, Scorer
from storage.db import connect
from tests.images import good_and_bad_folder, photo, save


class ProbeScorer(Scorer):
    """A real but trivial scorer (mean brightness) that records every image it is handed, so the
    tests can see exactly what the engine scored. Not registered: passed to the job directly."""

    name: ClassVar[str] = "probe"
    version: ClassVar[str] = "1"
    metrics = (Metric("probe_brightness", 0.0, 255.0, True),)
    input_size = 64

    def __init__(self, *args, fail_on: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.fail_on = fail_on

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        out = []
        for im in images:
            if self.fail_on and self.fail_on in im.path:
                raise RuntimeError("probe failure")
            self.seen.append(im.path)
            self.sizes.append(im.size)
            out.append({"probe_brightness": float(im.at(self.input_size).mean())})
        return out


def make_photos(root: Path, n: int, start: int = 0) -> list[str]:
    rels = [f"shot{i // 10}/frame_{i:03d}.png" for i in range(start, start + n)]
    for i, rel in enumerate(rels, start):
        save(photo(i, (96, 64)), root / rel)
    return rels


def run(db: Path, root: Path, scorer: Scorer, batch_size: int = 4):
    con = connect(db)
    try:
        return ScoringJob(con, root, [scorer], batch_size=batch_size).run(), con
    except Exception:
        con.close()
        raise


def test_incremental_rescan_scores_only_new_and_changed(tmp_path: Path) -> None:
    root, db = tmp_path / "root", tmp_path / "db.duckdb"
    make_photos(root, 30)
    probe = ProbeScorer()
    progress, con = run(db, root, probe)
    con.close()
    assert progress.state == "done" and progress.total == 30 and len(probe.seen) == 30

    new = make_photos(root, 10, start=30)
    changed = "shot0/frame_003.png"
    save(photo(999, (96, 64)), root / changed)
    os.utime(root / "shot0/frame_004.png", (1, 1))  # touched, same bytes: hashed again, not re-scored
    probe = ProbeScorer()
    progress, con = run(db, root, probe)
    con.close()
    assert sorted(probe.seen) == sorted(new + [changed])
    assert progress.total == 12 and progress.unchanged == 28  # the touched file is checked, not scored

    probe = ProbeScorer()
    progress, con = run(db, root, probe)
    assert probe.seen == [] and progress.total == 0
    rows = con.execute("SELECT count(*), count(probe_brightness) FROM image_scores").fetchall()[0]
    con.close()
    assert rows == (40, 40)


def test_broken_files_are_recorded_and_the_rest_scored(tmp_path: Path) -> None:
    root = tmp_path / "root"
    good, bad = good_and_bad_folder(root, tmp_path / "outside")
    probe = ProbeScorer()
    progress, con = run(tmp_path / "db.duckdb", root, probe)
    rows = {p: (s, e, v) for p, s, e, v in con.execute(
        "SELECT path, status, error, probe_brightness FROM image_scores").fetchall()}
    con.close()
    assert progress.state == "done"
    assert set(rows) == good | set(bad)
    for rel in good:
        assert rows[rel][0] == "ok" and rows[rel][2] is not None, rel
    for rel, reason in bad.items():
        assert rows[rel][0] == "error" and reason in rows[rel][1], (rel, rows[rel])
    assert progress.errors == len(bad) - 1  # the escaping symlink is rejected by the scan itself

    probe = ProbeScorer()   # broken files stay recorded and are not decoded again until they change
    progress, con = run(tmp_path / "db.duckdb", root, probe)
    again = {p: e for p, e in con.execute("SELECT path, error FROM image_scores").fetchall()}
    con.close()
    assert probe.seen == [] and progress.total == 0 and progress.errors == 0
    assert {rel: again[rel] for rel in bad} == {rel: rows[rel][1] for rel in bad}

    (root / "escape.png").unlink()   # a file the scan rejected, now a real image: scored
    save(photo(5, (96, 64)), root / "escape.png")
    probe = ProbeScorer()
    progress, con = run(tmp_path / "db.duckdb", root, probe)
    con.close()
    assert probe.seen == ["escape.png"] and progress.errors == 0


def test_decoding_is_reduced_to_what_the_scorers_need(tmp_path: Path) -> None:
    root = tmp_path / "root"
    save(photo(0, (2048, 1536)), root / "big.jpg", quality=90)
    probe = ProbeScorer()
    _, con = run(tmp_path / "db.duckdb", root, probe)
    width, height = con.execute("SELECT width, height FROM images").fetchall()[0]
    con.close()
    assert (width, height) == (2048, 1536)       # stored size is the original
    assert max(probe.sizes[0]) < 2048            # but it was decoded reduced (JPEG draft)


def test_a_scorer_failing_on_one_image_fails_only_that_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_photos(root, 8)
    _, con = run(tmp_path / "db.duckdb", root, ProbeScorer(fail_on="frame_005"))
    rows = dict(con.execute("SELECT i.path, r.error FROM scorer_runs r JOIN images i ON i.id = r.image_id")
                .fetchall())
    con.close()
    assert "probe failure" in rows["shot0/frame_005.png"]
    assert sum(e is None for e in rows.values()) == 7


def test_cancel_stops_between_batches_and_a_rerun_finishes(tmp_path: Path) -> None:
    root, db = tmp_path / "root", tmp_path / "db.duckdb"
    make_photos(root, 40)
    con = connect(db)
    gate = threading.Event()

    class SlowProbe(ProbeScorer):
        def score_batch(self, images):
            gate.wait(5)
            return super().score_batch(images)

    job = ScoringJob(con, root, [SlowProbe()], batch_size=4)
    job.start()
    job.cancel()
    gate.set()
    job.join(10)
    assert job.progress.state == "cancelled" and job.progress.done < 40
    probe = ProbeScorer()
    progress = ScoringJob(con, root, [probe], batch_size=4).run()
    assert progress.state == "done" and len(probe.seen) == 40 - job.progress.done
    con.close()


def test_unavailable_scorer_is_reported_and_others_run(tmp_path: Path) -> None:
    from scorers.base import Availability

    class MissingWeights(ProbeScorer):
        name = "missing_weights"
        metrics = (Metric("missing_metric", 0.0, 1.0, True),)

        def availability(self) -> Availability:
            return Availability(False, "weights file x.pt not in cache and HF_HUB_OFFLINE=1")

    root = tmp_path / "root"
    make_photos(root, 3)
    con = connect(tmp_path / "db.duckdb")
    probe = ProbeScorer()
    progress = ScoringJob(con, root, [MissingWeights(), probe]).run()
    assert progress.unavailable == {"missing_weights": "weights file x.pt not in cache and HF_HUB_OFFLINE=1"}
    assert len(probe.seen) == 3
    values = con.execute("SELECT missing_metric, probe_brightness FROM image_scores").fetchall()
    assert all(m is None and p is not None for m, p in values)
    con.close()


def test_per_image_scorers_run_on_the_decode_threads(tmp_path: Path) -> None:
    class ThreadProbe(ProbeScorer):
        per_image = True

        def score_batch(self, images):
            self.threads = getattr(self, "threads", set()) | {threading.current_thread().name}
            return super().score_batch(images)

    root = tmp_path / "root"
    make_photos(root, 12)
    probe = ThreadProbe()
    _, con = run(tmp_path / "db.duckdb", root, probe)
    n = con.execute("SELECT count(probe_brightness) FROM image_scores").fetchall()[0][0]
    con.close()
    assert n == 12 and all(t.startswith("curator-decode") for t in probe.threads)


def test_probe_values_match_pixels(tmp_path: Path) -> None:
    root = tmp_path / "root"
    save(np.full((32, 32, 3), 200, np.uint8), root / "flat.png")
    _, con = run(tmp_path / "db.duckdb", root, ProbeScorer())
    assert con.execute("SELECT probe_brightness FROM image_scores").fetchall()[0][0] == pytest.approx(200.0)
    con.close()
