"""Held-out benchmark of the degradation network, and of every other registered metric at spotting
watermarks.

The held-out images come from sources the network never saw (scorers/degradation/data.py:
HELDOUT_PHOTOS, the "landscape" procedural family, the held-out fonts), degraded with the same
random recipe as training under a different seed, at the scorer's input size (384 px). Two sets:

- mixed: random combinations of defects (20% clean). Per head: Spearman correlation of the
  prediction with the true intensity (over all images, and over images where the defect is
  present), and ROC-AUC for present vs absent.
- watermark vs clean: each clean image once as is and once with only a random watermark. ROC-AUC of
  the watermark head and of every metric of every other available registered scorer, each taken in
  its better orientation (so a metric is not penalised for its sign).

Also times the scorer on 1024 x 768 images (including the resize to 384) at batch 32.

    python -m benchmarks.degradation_eval [--mixed 600] [--pairs 200] [--weights PT] [--write BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import datetime
import platform
import re
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from scipy.stats import rankdata, spearmanr

from scorers import registered
from scorers.base import DecodedImage, Scorer, WeightsUnavailable
from scorers.degradation import HEADS, DegradationScorer
from scorers.degradation import data as ddata

SECTION = "## Degradation network (issue 5)"
EVAL_SEED = 20261123  # differs from every training seed, and the sources differ anyway


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """ROC-AUC by the Mann-Whitney rank-sum (ties count half); nan if a class is empty."""
    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_vs_clean(scores: np.ndarray, subset: np.ndarray, marked: np.ndarray) -> float:
    """ROC-AUC of the watermarked images in `subset` against every clean image."""
    keep = subset | ~marked
    return auc(scores[keep], subset[keep])


def heldout_sets(n_mixed: int, n_pairs: int, size: int
                 ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray, list[str], list[str]]:
    """(mixed images, their labels (n, heads), watermark-vs-clean images, their watermark opacity
    (0 = clean), their sources, their watermark kinds ("clean" for none))."""
    pool = ddata.CleanPool.builtin("heldout")
    fonts = ddata.split_fonts("heldout")
    mixed, labels = [], []
    for i in range(n_mixed):
        rng = np.random.default_rng([EVAL_SEED, 0, i])
        img, lab, _, _ = ddata.degrade_random(pool.canvas(rng, size), rng, fonts)
        mixed.append(img)
        labels.append(lab)
    pairs, opacity, sources, kinds = [], [], [], []
    for i in range(n_pairs):
        rng = np.random.default_rng([EVAL_SEED, 1, i])
        clean, source = pool.draw(rng, size)
        img, lab, _, kind = ddata.degrade_random(clean, rng, fonts, p_clean=0.0, only=("watermark",))
        pairs += [clean, img]
        opacity += [0.0, float(lab[HEADS.index("watermark")])]
        sources += [source, source]
        kinds += ["clean", kind or "clean"]
    return mixed, np.array(labels), pairs, np.array(opacity), sources, kinds


def decoded(images: Sequence[np.ndarray]) -> list[DecodedImage]:
    return [DecodedImage(path=f"img{i}", rgb=a, original_size=(a.shape[1], a.shape[0])) for i, a in enumerate(images)]


def score_all(scorer: Scorer, images: Sequence[np.ndarray], batch: int = 32) -> dict[str, np.ndarray]:
    """Metric -> values (nan where the scorer returned None)."""
    rows: list[dict[str, float | None]] = []
    for i in range(0, len(images), batch):
        rows += scorer.score_batch(decoded(images[i:i + batch]))
    return {m: np.array([np.nan if r[m] is None else r[m] for r in rows], np.float64) for m in scorer.metric_names()}


def throughput(scorer: Scorer, images: Sequence[np.ndarray], batch: int = 32) -> float:
    """Images per second on fresh DecodedImages (so each resize is paid), after one warm-up batch."""
    scorer.score_batch(decoded(images[:batch]))
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        scorer.score_batch(decoded(images[i:i + batch]))
    return len(images) / (time.perf_counter() - start)


def fmt(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.3f}"


def run(n_mixed: int, n_pairs: int, n_speed: int, weights: Path | None = None) -> str:
    ours = DegradationScorer(device="cpu", options={"degradation_weights": str(weights)} if weights else None)
    ours.load()
    mixed, labels, pairs, opacity, sources, kinds = heldout_sets(n_mixed, n_pairs, ours.input_size or 384)
    marked = opacity > 0
    pred = score_all(ours, mixed)
    n_clean = int((labels.sum(1) == 0).sum())
    lines = [f"Held-out mixed set: {n_mixed} images (sources never trained on; {n_clean} clean), "
             f"defects combined at random.", "",
             "| head | present | Spearman (all) | Spearman (present only) | ROC-AUC present vs absent |",
             "|---|---|---|---|---|"]
    for k, head in enumerate(HEADS):
        p, y = pred[f"degradation_{head}"], labels[:, k]
        present = y > 0
        rho_all = spearmanr(p, y).statistic
        rho_present = spearmanr(p[present], y[present]).statistic if present.sum() > 2 else float("nan")
        lines.append(f"| {head} | {int(present.sum())} | {fmt(rho_all)} | {fmt(rho_present)} "
                     f"| {fmt(auc(p, present))} |")
    overall = pred["degradation_overall"]
    lines += ["", f"`degradation_overall` vs number of defects present: Spearman "
              f"{fmt(spearmanr(overall, -(labels > 0).sum(1)).statistic)} (higher overall = fewer defects).", ""]

    speed_imgs = [cv2.resize(a, (1024, 768), interpolation=cv2.INTER_CUBIC) for a in (mixed * 4)[:n_speed]]
    rows: list[tuple[float, str, str]] = []
    speeds: list[tuple[str, float]] = []
    skipped: list[str] = []
    for cls in registered().values():
        scorer = ours if cls is DegradationScorer else cls(device="cpu")
        status = scorer.availability()
        if not status.ok:
            skipped.append(f"{cls.name} ({status.reason.split(' (')[0]})")
            continue
        try:
            scorer.load()
        except WeightsUnavailable as exc:
            skipped.append(f"{cls.name} ({str(exc).split(' (')[0]})")
            continue
        for metric, values in score_all(scorer, pairs).items():
            if scorer is ours and metric == "degradation_watermark":
                mark_scores = values
            if scorer is ours and metric != "degradation_watermark":
                continue
            ok = ~np.isnan(values)
            if ok.sum() < len(values) / 2:
                continue
            a = auc(values[ok], marked[ok])
            rows.append((max(a, 1 - a), f"{cls.name}", f"`{metric}`" + ("" if a >= 0.5 else " (lower = watermarked)")))
        speeds.append((cls.name, throughput(scorer, speed_imgs)))
        if scorer is not ours:
            scorer.unload()
    rows.sort(reverse=True)
    lines += [f"Watermark vs clean: {n_pairs} held-out images, each clean and with one random watermark "
              "(text / logo, held-out fonts, opacity 0.15..1, any position / colour / angle, sometimes tiled). "
              "ROC-AUC of every available metric, in its better orientation:", "",
              "| scorer | metric | ROC-AUC |", "|---|---|---|"]
    lines += [f"| {name} | {metric} | {a:.3f} |" for a, name, metric in rows]
    if skipped:
        lines += ["", "Not compared (unavailable here): " + "; ".join(skipped) + "."]
    lines += ["", "`degradation_watermark` by the mark's opacity (each band's watermarked images against all the "
              "clean ones):", "", "| opacity | images | ROC-AUC |", "|---|---|---|"]
    for lo, hi in ((0.15, 0.3), (0.3, 0.6), (0.6, 1.01)):
        band = (opacity >= lo) & (opacity < hi)
        band_auc = auc_vs_clean(mark_scores, band, marked)
        lines.append(f"| {lo:.2f}..{min(hi, 1.0):.2f} | {int(band.sum())} | {fmt(band_auc)} |")
    lines += ["", "`degradation_watermark` by kind of mark (each kind's watermarked images against all the clean "
              "ones):", "", "| mark | images | median score | ROC-AUC |", "|---|---|---|---|"]
    kind = np.array(kinds)
    for name in sorted(set(kind[marked])):
        mine = kind == name
        lines.append(f"| {name} | {int(mine.sum())} | {np.median(mark_scores[mine]):.3f} "
                     f"| {fmt(auc_vs_clean(mark_scores, mine, marked))} |")
    lines += ["", "Clean images of the watermark-vs-clean set by source: how high `degradation_watermark` scores "
              "them, and the ROC-AUC of all the watermarked images against just these clean ones (a source the "
              "head mistakes for marks pulls the overall figure down):", "",
              "| clean source | images | median score | 90th percentile | ROC-AUC |", "|---|---|---|---|---|"]
    src = np.array(sources)
    for source in sorted(set(src[~marked])):
        mine = ~marked & (src == source)
        keep = marked | mine   # as for the opacity bands: all marked images against this source's clean ones
        lines.append(f"| {source} | {int(mine.sum())} | {np.median(mark_scores[mine]):.3f} "
                     f"| {np.quantile(mark_scores[mine], 0.9):.3f} | {fmt(auc(mark_scores[keep], marked[keep]))} |")
    lines += ["", f"Throughput on CPU, {n_speed} images of 1024 x 768 in batches of 32, each scorer's own resize "
              "included (the same images for every scorer):", "", "| scorer | images/s |", "|---|---|"]
    lines += [f"| {name} | {ips:.1f} |" for name, ips in speeds]
    return "\n".join(lines) + "\n"


def write_section(path: Path, body: str, header: str) -> None:
    """Replace (or append) our section of BENCHMARKS.md, leaving everyone else's untouched."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{SECTION}\n\n{header}\n\n{body}"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mixed", type=int, default=600)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--speed", type=int, default=128, help="images for the throughput measurement")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the benchmark machine has 2 cores)")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--weights", type=Path, help="a retrained checkpoint (default: the shipped one)")
    ap.add_argument("--write", type=Path, help="write the result into this BENCHMARKS.md under our heading")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    body = run(args.mixed, args.pairs, args.speed, args.weights)
    header = (f"Machine: {platform.machine()} CPU, {args.threads} threads ({args.threads}-core machine), "
              f"torch {torch.__version__}; date {args.date}. Reproduce: "
              f"`python -m benchmarks.degradation_eval --mixed {args.mixed} --pairs {args.pairs}`.")
    print(f"{SECTION}\n\n{header}\n\n{body}")
    if args.write:
        write_section(args.write, body, header)


if __name__ == "__main__":
    main()
