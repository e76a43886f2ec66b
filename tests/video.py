"""A synthetic "video" dataset for dedupe, selection and export tests, scored by the real engine.

Each shot is a slow pan over one photo-like scene: consecutive frames shift by a few pixels, and some
are re-encoded as low-quality JPEG or slightly blurred, like frames pulled from a compressed video.
A few unrelated single photos sit beside the shots. Quality is one declared metric whose value
depends mostly on the shot (one well-lit shot outranks the others, as happens in real footage), so
plain top-K piles onto one shot: the situation diversity-aware selection exists for.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curator.degrade import gaussian_blur, jpeg
from curator.job import ScoringJob
from scorers.phash import PerceptualHash
from storage.db import connect
from storage.ranking import refresh_view
from storage.scores import ImageResult, MetricInfo, sync_metrics, write_results
from tests.images import photo, save

QUALITY = MetricInfo("test_quality", "test_quality", 0.0, 1.0, True, 1.0, "synthetic per-shot quality")


@dataclass
class Video:
    root: Path
    db: Path
    shot_of: dict[str, int]        # relative path -> shot number (-1 for the unrelated singles)
    shots: int
    frames: int


def make_video(base: Path, shots: int = 6, frames: int = 10, singles: int = 3, seed: int = 0) -> Video:
    """Write the frames under base/root, score them with the real engine (perceptual hash) into
    base/curator.duckdb, and store the synthetic quality metric."""
    rng = np.random.default_rng(seed)
    root = base / "root"
    shot_of: dict[str, int] = {}
    for s in range(shots):
        scene = photo(200 + s, (360, 270))
        for f in range(frames):
            dx, dy = min(40, 3 * f + int(rng.integers(0, 2))), min(30, 2 * f)
            frame = scene[dy:dy + 240, dx:dx + 320]
            if f % 3 == 1:
                frame = jpeg(frame, int(rng.integers(40, 80)))
            elif f % 3 == 2:
                frame = gaussian_blur(frame, 0.8)
            rel = f"shot{s}/frame_{f:03d}." + ("jpg" if f % 2 else "png")
            save(frame, root / rel, **({"quality": 92} if f % 2 else {"compress_level": 1}))
            shot_of[rel] = s
    for n in range(singles):
        rel = f"singles/photo_{n}.png"
        save(photo(500 + n, (320, 240)), root / rel, compress_level=1)
        shot_of[rel] = -1
    db = base / "curator.duckdb"
    con = connect(db)
    progress = ScoringJob(con, root, [PerceptualHash()], batch_size=16, workers=1).run()
    assert progress.state == "done" and progress.errors == 0, progress
    _store_quality(con, shot_of, shots, rng)
    con.close()
    return Video(root, db, shot_of, shots, frames)


def _store_quality(con, shot_of: dict[str, int], shots: int, rng: np.random.Generator) -> None:
    """Shot 0 is the best-lit: every frame of it outranks every frame of the others."""
    sync_metrics(con, [QUALITY])
    rows = con.execute("SELECT id, path, sha256 FROM images").fetchall()
    results = []
    for image_id, path, sha in rows:
        s = shot_of[path]
        base = 0.4 if s < 0 else 0.9 - 0.5 * s / max(1, shots)
        r = ImageResult(int(image_id), sha, "ok")
        r.scores = {QUALITY.scorer: {QUALITY.name: float(base + rng.uniform(0, 0.05))}}
        results.append(r)
    write_results(con, results, {QUALITY.scorer: "1"}, {QUALITY.scorer: (QUALITY.name,)})
    refresh_view(con)


def path_ids(con) -> dict[str, int]:
    return {p: int(i) for i, p in con.execute("SELECT id, path FROM images").fetchall()}


def open_copy(video: Video, where: Path):
    """A read-write connection to a private copy of the video's database, for tests that decide."""
    db = where / "copy.duckdb"
    shutil.copyfile(video.db, db)
    return connect(db)
