"""Dashboard re-ranking latency: "a weight slider moved" to "the new first page is ready", server side.

Synthesises N images directly in a DuckDB file (rows, not pictures): every registered metric gets
values in its declared range (open ones log-normal), face metrics are missing on half the images as
on photos without a face, 2% of the images are broken and 10% already decided. Then, for random weight
changes, times the functions the dashboard calls:

- `page`: `OpenDataset.page(view, 1)`, the first page of 48 under the new weights (normalised cache
  freshness check, the ranked page query with the live decisions join and count, thumbnail lookup);
- `slider`: the whole slider handler, `Dashboard.on_weights`: saving the weights, the page, the
  histograms (the ensemble's changes with the weights), counts and the selected image's percentiles.

It also times building the normalised cache, which happens once per change of the scores (at most
every few seconds while a scoring job runs), not on slider moves, and, for comparison, the same
first page from `storage.ranking.ranked()`, the one SQL query the CLI uses (normalising every time).

    python -m benchmarks.rerank_latency [--sizes 10000,100000] [--moves 30] [--work DIR]
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
from pathlib import Path

import numpy as np
import pandas as pd


def registered_metrics():
    import scorers
    from curator.job import metric_infos

    return metric_infos(list(scorers.registered().values()))


def synthesise(db: Path, n: int, seed: int = 0) -> None:
    """A Curator database with `n` scored images, written through the storage API and bulk SQL."""
    from storage import decisions
    from storage.db import connect, quote_ident
    from storage.ranking import refresh_view
    from storage.scores import sync_metrics

    rng = np.random.default_rng(seed)
    con = connect(db)
    metrics = registered_metrics()
    sync_metrics(con, metrics)
    refresh_view(con)
    broken = rng.random(n) < 0.02
    images = pd.DataFrame({
        "path": [f"shoot{i // 500:04d}/frame_{i:06d}.jpg" for i in range(n)],
        "sha256": [f"{i:064x}" for i in range(n)],
        "status": np.where(broken, "error", "ok"),
        "error": np.where(broken, "corrupt or truncated image data", None),
    })
    con.register("bench_images", images)
    con.execute("INSERT INTO images (path, sha256, width, height, bytes, mtime, format, status, error) "
                "SELECT path, sha256, 1920, 1080, 400000, 0, 'JPEG', status, error FROM bench_images")
    ids = con.execute("SELECT id FROM images ORDER BY id").fetchnumpy()["id"]
    ok = ~broken
    no_face = rng.random(n) < 0.5
    columns = {"image_id": ids}
    for m in metrics:
        if m.min is not None and m.max is not None:
            values = rng.uniform(m.min, m.max, n)
        else:
            values = rng.lognormal(0.0, 1.0, n) + (m.min or 0.0)
        missing = ~ok | (no_face if m.name.startswith(("face_", "identity_")) else False)
        columns[m.name] = np.where(missing, np.nan, values)
    scores = pd.DataFrame(columns)
    con.register("bench_scores", scores)
    names = ", ".join(quote_ident(m.name) for m in metrics)
    con.execute(f"INSERT INTO scores (image_id, {names}) SELECT image_id, {names} FROM bench_scores")
    decided = ids[rng.random(n) < 0.10]
    half = len(decided) // 2
    decisions.decide(con, decided[:half].tolist(), "accepted", session="bench")
    decisions.decide(con, decided[half:].tolist(), "rejected", session="bench")
    con.execute("CHECKPOINT")
    con.close()


def measure(work: Path, n: int, moves: int) -> dict[str, list[float] | float]:
    os.environ["CURATOR_DATA_DIR"] = str(work / "data")   # thumbnails of the run, not the user's
    from curator.session import ScoringOptions, Workspace
    from curator.ui import Dashboard
    from storage import browse
    from storage.ranking import ensure_normalised, ranked, refresh_normalised

    root = work / f"root-{n}"
    root.mkdir(parents=True, exist_ok=True)   # no files: the rows are synthetic
    db = work / f"rerank-{n}.duckdb"
    if not db.exists():
        synthesise(db, n)
    ws = Workspace(ScoringOptions())
    ds = ws.open(root, db=db, score=False)
    builds = []
    for _ in range(3):
        t = time.perf_counter()
        refresh_normalised(ds.con)
        builds.append(time.perf_counter() - t)
    ensure_normalised(ds.con)
    dash = Dashboard(ws, ds)
    dash.build()
    rng = np.random.default_rng(1)
    names = [m.name for m in dash.metrics]
    inputs = lambda weights: [ds.key, "bench", "ensemble", "desc", "all", "all", {}, 1, None, [], "ensemble",  # noqa: E731
                              *[weights[n] for n in names]]
    ds.page(browse.View(), 1)   # warm-up: first query plans, thumbnail placeholder
    page_times, slider_times = [], []
    for _ in range(moves):
        weights = {m: float(rng.choice([0.0, 0.5, 1.0, 2.0, 3.0])) for m in names}
        t = time.perf_counter()
        result = ds.page(browse.View(weights=weights), 1)
        page_times.append(time.perf_counter() - t)
        assert len(result.page.rows) == 48 and result.page.total == n
        weights[names[0]] = float(rng.uniform(0, 3))
        t = time.perf_counter()
        dash.on_weights(None, *inputs(weights))   # no login: the request carries no user
        slider_times.append(time.perf_counter() - t)
    uncached = []
    for _ in range(max(3, moves // 6)):
        weights = {m: float(rng.choice([0.0, 0.5, 1.0, 2.0, 3.0])) for m in names}
        t = time.perf_counter()
        ranked(ds.con, weights, limit=48)
        uncached.append(time.perf_counter() - t)
    ws.close()
    return {"page": page_times, "slider": slider_times, "build": statistics.median(builds),
            "uncached": statistics.median(uncached)}


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated image counts")
    ap.add_argument("--moves", type=int, default=30, help="weight changes timed per size")
    ap.add_argument("--work", type=Path, help="folder for the databases (default: a temp dir, removed)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="curator-rerank-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        results = {n: measure(work, n, args.moves) for n in sizes}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    metrics = registered_metrics()
    open_range = sum(m.min is None or m.max is None for m in metrics)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; {len(metrics)} metrics ({open_range} open-range); "
          f"{args.moves} random weight changes per size; milliseconds\n")
    print("| images | first page (median / p95) | whole slider handler (median / p95) "
          "| cache build (once per score change) | `ranked()` without the cache (median) |")
    print("|---|---|---|---|---|")
    for n, r in results.items():
        page, slider = [1000 * v for v in r["page"]], [1000 * v for v in r["slider"]]
        print(f"| {n:,} | {statistics.median(page):.0f} / {p95(page):.0f} | "
              f"{statistics.median(slider):.0f} / {p95(slider):.0f} | {1000 * r['build']:.0f} | "
              f"{1000 * r['uncached']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
