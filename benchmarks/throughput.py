"""Throughput of `score` with the classic scorers vs a bare Pillow decode and cleanvision, side by side.

Builds a folder of camera-sized JPEGs and PNGs from the demo source photos, warms the page cache,
then times, in one process and one run: (1) a bare Pillow decode of every file, on one thread (the
target's reference) and on as many threads as Curator decodes with (like for like), (2) Curator's
scoring job (scan, hash, decode once, every classic scorer, DuckDB writes) into a fresh database,
(3) cleanvision's `Imagelab.find_issues()` on the same folder. Prints a Markdown table.

    python -m benchmarks.throughput [--images 240] [--repeats 3] [--work DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from curator.demo import source_photos
from curator.job import ScoringJob, create_scorers
from scorers import registered
from storage.db import connect

WORKERS = 2  # Curator's decode threads (the `score` default)
SIZES = [((1920, 1080), ".jpg"), ((1920, 1080), ".jpg"), ((3000, 2000), ".jpg"), ((1024, 768), ".png")]


def build_folder(folder: Path, n: int) -> list[Path]:
    photos = list(source_photos().values())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        (w, h), ext = SIZES[i % len(SIZES)]
        src = photos[i % len(photos)]
        sh, sw = src.shape[:2]
        ch, cw = int(sh * rng.uniform(0.6, 1.0)), int(sw * rng.uniform(0.6, 1.0))
        y, x = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
        img = cv2.resize(np.ascontiguousarray(src[y:y + ch, x:x + cw]), (w, h), interpolation=cv2.INTER_CUBIC)
        p = folder / f"shot{i // 20:03d}" / f"frame_{i:05d}{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p, **({"quality": 90} if ext == ".jpg" else {}))
        paths.append(p)
    return paths


def _decode(path: Path) -> None:
    with Image.open(path) as im:
        im.convert("RGB")


def bare_pillow(paths: list[Path], threads: int = 1) -> float:
    t = time.perf_counter()
    if threads == 1:
        for p in paths:
            _decode(p)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(_decode, paths))
    return time.perf_counter() - t


def curator_score(folder: Path, scratch: Path, names: list[str]) -> float:
    db = scratch / f"bench-{time.monotonic_ns()}.duckdb"
    con = connect(db)
    t = time.perf_counter()
    progress = ScoringJob(con, folder, create_scorers(names, "cpu"), workers=WORKERS).run()
    elapsed = time.perf_counter() - t
    con.close()
    assert progress.state == "done" and progress.errors == 0, progress
    return elapsed


def cleanvision(folder: Path) -> float | None:
    try:
        from cleanvision import Imagelab
    except ImportError:
        return None
    t = time.perf_counter()
    Imagelab(data_path=str(folder)).find_issues(verbose=False)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, help="folder for the generated images (default: a temp dir)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="curator-bench-"))
    folder, scratch = work / "images", work / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    paths = sorted(folder.rglob("*.*")) if folder.is_dir() else []
    if len(paths) != args.images:
        shutil.rmtree(folder, ignore_errors=True)
        paths = build_folder(folder, args.images)
    for p in paths:  # warm the page cache so every contender reads from memory
        p.read_bytes()
    names = [n for n, c in registered().items() if c.__module__ == "scorers.classic"]
    runs: dict[str, list[float]] = {"pillow": [], "pillow_mt": [], "curator": [], "cleanvision": []}
    for _ in range(args.repeats):
        runs["pillow"].append(bare_pillow(paths))
        runs["pillow_mt"].append(bare_pillow(paths, WORKERS))
        runs["curator"].append(curator_score(folder, scratch, names))
        cv = cleanvision(folder)
        if cv is not None:
            runs["cleanvision"].append(cv)
    n = len(paths)
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    print(f"{time.strftime('%Y-%m-%d')}; {n} images ({', '.join(f'{w}x{h}{e}' for (w, h), e in SIZES)} in rotation); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; median of {args.repeats}")
    print(f"classic scorers: {', '.join(names)}\n")
    print("| contender | seconds | images/s | Curator speed ratio |")
    print("|---|---|---|---|")
    for k, label in (("pillow", "bare Pillow decode (1 thread)"),
                     ("pillow_mt", f"bare Pillow decode ({WORKERS} threads)"), ("curator", "curator score (classic)"),
                     ("cleanvision", "cleanvision find_issues")):
        if k in med:
            print(f"| {label} | {med[k]:.2f} | {n / med[k]:.1f} | {med[k] / med['curator']:.2f}x |")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
