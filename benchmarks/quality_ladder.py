"""Quality ladder: do the classic metrics track synthetic defects on real photos?

Builds a ladder from permissively licensed photos that ship with installed packages, applies every
`curator.degrade.LADDER` defect at levels 1..5, scores clean and degraded images, and prints:

- per defect, the best metric's Spearman correlation with severity (clean = 0), pooled over photos
  and the median over photos (per-image);
- a defect x metric matrix of pooled Spearman correlations (sign: + means the metric gets worse);
- the share of (clean, degraded) pairs of the same photo in which the default ensemble ranks the
  clean photo strictly above its degraded copy, overall and per defect.

Every table is given for the tuning photos, the held-out photos and all photos. `--severities
shifted` uses different severities than the ladder (between and beyond its levels) to check that
nothing is tuned to the exact ladder. `--engine` runs the images through `python -m curator score`
(as PNG and as JPEG q95) and reads `ensemble` and every metric from the `image_scores` view;
without it, images are scored in process and the ensemble is computed the way storage/ranking.py
does (declared range or dataset percentile, flipped when lower is better, weighted mean).

    python benchmarks/quality_ladder.py [--split all|tune|heldout] [--severities ladder|shifted]
                                        [--engine] [--markdown]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curator import degrade  # noqa: E402
from scorers import classic  # noqa: E402
from scorers.base import DecodedImage, Metric, Scorer  # noqa: E402

CLASSIC: tuple[type[Scorer], ...] = (
    classic.SharpnessScorer, classic.NoiseScorer, classic.CompressionScorer, classic.ExposureScorer,
    classic.ContrastScorer, classic.ColorScorer, classic.ResolutionScorer,
)
MAX_SIDE = 1024  # photos are reduced to the analysis scale first, so level 1 is visible there

# (name, loader, licence). skimage.data images are CC0 / public domain per their docstrings;
# grace_hopper.jpg is a US Navy photo in the public domain.
_SK = "skimage.data"


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()
    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


PHOTOS: dict[str, tuple[Callable[[], np.ndarray], str, str]] = {
    # tuning split
    "astronaut": (_skimage("astronaut"), "tune", f"{_SK}, NASA, public domain"),
    "coffee": (_skimage("coffee"), "tune", f"{_SK}, CC0 Rachel Michetti"),
    "hubble_deep_field": (_skimage("hubble_deep_field"), "tune", f"{_SK}, NASA, public domain"),
    "camera": (_skimage("camera"), "tune", f"{_SK}, CC0 Lav Varshney"),
    "coins": (_skimage("coins"), "tune", f"{_SK}, no known copyright restrictions"),
    "grass": (_skimage("grass"), "tune", f"{_SK}, CC0 (CC0Textures)"),
    "immunohistochemistry": (_skimage("immunohistochemistry"), "tune", f"{_SK}, no known restrictions"),
    # held-out split: never looked at while choosing mappings or weights
    "chelsea": (_skimage("chelsea"), "heldout", f"{_SK}, CC0 Stefan van der Walt"),
    "rocket": (_skimage("rocket"), "heldout", f"{_SK}, SpaceX, public domain"),
    "grace_hopper": (_grace_hopper, "heldout", "matplotlib sample data, US Navy, public domain"),
    "retina": (_skimage("retina"), "heldout", f"{_SK}, CC0"),
    "moon": (_skimage("moon"), "heldout", f"{_SK}, no known copyright restrictions"),
    "gravel": (_skimage("gravel"), "heldout", f"{_SK}, CC0 (CC0Textures)"),
    "brick": (_skimage("brick"), "heldout", f"{_SK}, CC0 (CC0Textures)"),
    "cell": (_skimage("cell"), "heldout", f"{_SK}, CC0"),
}

# Severities other than the ladder's: between its levels and a little beyond level 5.
SHIFTED: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "gaussian_blur": lambda im, k: degrade.gaussian_blur(im, (0.8, 1.6, 2.5, 3.6, 5.5)[k - 1]),
    "motion_blur": lambda im, k: degrade.motion_blur(im, (4, 7, 12, 19, 29)[k - 1], 75.0),
    "noise": lambda im, k: degrade.poisson_noise(im, (400, 120, 40, 15, 6)[k - 1], np.random.default_rng(k)),
    "jpeg": lambda im, k: degrade.jpeg(im, (75, 50, 32, 18, 8)[k - 1]),
    "underexposure": lambda im, k: degrade.exposure(im, -(1.0, 1.8, 2.5, 3.2, 4.0)[k - 1]),
    "overexposure": lambda im, k: degrade.exposure(im, (0.7, 1.2, 1.8, 2.3, 3.0)[k - 1]),
    "low_contrast": lambda im, k: degrade.low_contrast(im, (0.65, 0.48, 0.33, 0.2, 0.08)[k - 1]),
    "color_cast": lambda im, k: degrade.color_cast(im, (0.4, 0.7, 1.0), (0.2, 0.38, 0.52, 0.7, 0.9)[k - 1]),
    "watermark": lambda im, k: degrade.watermark(im, text="PREVIEW", opacity=(0.25, 0.4, 0.6, 0.8, 0.95)[k - 1],
                                                 tiled=k >= 2, angle=20.0),
    "down_up": lambda im, k: degrade.down_up(im, (1.7, 2.5, 3.5, 5.0, 7.0)[k - 1]),
}


@dataclass(frozen=True)
class Sample:
    photo: str
    split: str
    defect: str
    level: int
    rgb: np.ndarray

    @property
    def stem(self) -> str:
        return f"{self.photo}__{self.defect}__{self.level}"


def load_photo(name: str) -> np.ndarray:
    rgb = np.asarray(PHOTOS[name][0]())
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb[..., :3])
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return rgb


def build(split: str, severities: str) -> list[Sample]:
    ladder = degrade.LADDER if severities == "ladder" else SHIFTED
    samples = []
    for name, (_, photo_split, _) in PHOTOS.items():
        if split not in ("all", photo_split):
            continue
        clean = load_photo(name)
        samples.append(Sample(name, photo_split, "clean", 0, clean))
        for defect, fn in ladder.items():
            for level in range(1, degrade.LEVELS + 1):
                samples.append(Sample(name, photo_split, defect, level, fn(clean, level)))
    return samples


def all_metrics() -> list[Metric]:
    return [m for s in CLASSIC for m in s.metrics]


def score_in_process(samples: list[Sample]) -> tuple[pd.DataFrame, float]:
    """One row per sample with every classic metric, and the mean seconds per image."""
    scorers = [cls() for cls in CLASSIC]
    rows = []
    start = time.perf_counter()
    for s in samples:
        h, w = s.rgb.shape[:2]
        image = DecodedImage(path=s.stem, rgb=s.rgb, original_size=(w, h), format="PNG")
        row: dict[str, object] = {}
        for scorer in scorers:
            row.update(scorer.score_batch([image])[0])
        rows.append(row)
    elapsed = (time.perf_counter() - start) / max(len(samples), 1)
    meta = pd.DataFrame([{"photo": s.photo, "split": s.split, "defect": s.defect, "level": s.level}
                         for s in samples])
    return pd.concat([meta, pd.DataFrame(rows).astype(float)], axis=1), elapsed


def ensemble(df: pd.DataFrame, metrics: list[Metric]) -> pd.Series:
    """The engine's default ensemble (storage/ranking.py), over the rows of `df` as the dataset."""
    num = pd.Series(0.0, index=df.index)
    den = pd.Series(0.0, index=df.index)
    for m in metrics:
        if m.default_weight <= 0 or m.name not in df:
            continue
        col = df[m.name]
        if m.closed_range:
            n = (col.clip(m.min, m.max) - m.min) / (m.max - m.min)
        else:  # DuckDB percent_rank(): (rank - 1) / (n - 1) over non-null values, ties share the lowest rank
            ranks = col.rank(method="min")
            n = (ranks - 1) / max(int(col.notna().sum()) - 1, 1)
        if not m.higher_is_better:
            n = 1 - n
        num += m.default_weight * n.fillna(0.0)
        den += m.default_weight * n.notna()
    return num / den.replace(0.0, np.nan)


def _signed(metrics: list[Metric]) -> dict[str, int]:
    """+1 where larger values are worse, so a positive correlation means 'tracks the defect'."""
    return {m.name: (-1 if m.higher_is_better else 1) for m in metrics}


def spearman(df: pd.DataFrame, defect: str, metric: str, sign: int) -> tuple[float, float]:
    """(pooled, median per photo) Spearman of sign * metric with level over clean + `defect` rows."""
    sub = df[(df.defect == defect) | (df.defect == "clean")].dropna(subset=[metric])
    if sub[metric].nunique() < 2:
        return float("nan"), float("nan")
    pooled = stats.spearmanr(sub.level, sign * sub[metric])[0]
    per = [stats.spearmanr(g.level, sign * g[metric])[0] for _, g in sub.groupby("photo")
           if g[metric].nunique() > 1]
    return float(pooled), float(np.median(per)) if per else float("nan")


def defects(df: pd.DataFrame) -> list[str]:
    return [d for d in df.defect.unique() if d != "clean"]


def best_metric_table(df: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """Per defect: the metric with the highest pooled Spearman, its per-photo median and minimum."""
    signs = _signed(metrics)
    names = [m for m in signs if m in df and df[m].notna().any()]
    rows = []
    for d in defects(df):
        scored = {m: spearman(df, d, m, signs[m]) for m in names}
        best = max(scored, key=lambda m: np.nan_to_num(scored[m][0], nan=-2))
        rows.append({"defect": d, "best metric": best, "pooled": scored[best][0],
                     "median per photo": scored[best][1], "min per photo": _per_photo_min(df, d, best, signs[best])})
    return pd.DataFrame(rows).set_index("defect")


def _per_photo_min(df: pd.DataFrame, defect: str, metric: str, sign: int) -> float:
    sub = df[(df.defect == defect) | (df.defect == "clean")].dropna(subset=[metric])
    per = [stats.spearmanr(g.level, sign * g[metric])[0] for _, g in sub.groupby("photo") if g[metric].nunique() > 1]
    return float(np.min(per)) if per else float("nan")


def matrix(df: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """Pooled Spearman of every pixel-dependent metric with every defect's severity."""
    signs = _signed(metrics)
    names = [m for m in signs if m in df and df.groupby("photo")[m].nunique().max() > 1]
    return pd.DataFrame({m: {d: spearman(df, d, m, signs[m])[0] for d in defects(df)} for m in names})


def pair_rates(df: pd.DataFrame, score: str = "ensemble") -> pd.Series:
    """Share of (clean, degraded copy) pairs with the clean photo strictly above, per defect and overall."""
    clean = df[df.defect == "clean"].set_index("photo")[score]
    deg = df[df.defect != "clean"]
    wins = deg[score].to_numpy() < clean.reindex(deg.photo).to_numpy()
    rates = pd.Series(wins, index=deg.index).groupby(deg.defect).mean()
    rates["overall"] = wins.mean()
    return rates


def run_engine(samples: list[Sample], fmt: str) -> pd.DataFrame:
    """Score the samples with `python -m curator score` and read the `image_scores` view back."""
    import duckdb

    names = ",".join(cls.name for cls in CLASSIC)
    with tempfile.TemporaryDirectory(prefix="ladder_") as tmp:
        root, db = Path(tmp) / "images", Path(tmp) / "scores.duckdb"
        root.mkdir()
        for s in samples:
            im = Image.fromarray(s.rgb)
            if fmt == "png":
                im.save(root / f"{s.stem}.png")
            else:
                im.save(root / f"{s.stem}.jpg", quality=95)
        cmd = [sys.executable, "-m", "curator", "score", str(root), "--db", str(db), "--scorers", names, "--quiet"]
        subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
        with duckdb.connect(str(db), read_only=True) as con:
            scores = con.execute("SELECT * FROM image_scores").df()
    scores["stem"] = scores.path.str.rsplit(".", n=1).str[0]
    meta = pd.DataFrame([{"stem": s.stem, "photo": s.photo, "split": s.split, "defect": s.defect,
                          "level": s.level} for s in samples])
    return meta.merge(scores, on="stem", how="left")


def _fmt(df: pd.DataFrame, markdown: bool) -> str:
    df = df.copy()
    for c in df.columns:
        if df[c].dtype.kind == "f":
            df[c] = df[c].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}")
    return df.to_markdown(disable_numparse=True) if markdown else df.to_string()


def split_table(part: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """Best metric per defect with its Spearman correlations, and the ensemble's pair accuracy."""
    table = best_metric_table(part, metrics)
    rates = pair_rates(part)
    table["clean above degraded"] = [f"{rates[d]:.1%}" for d in table.index]
    table.loc["all defects"] = ["", np.nan, np.nan, np.nan, f"{rates['overall']:.1%}"]
    no_mark = part[part.defect != "watermark"]
    table.loc["all but watermark"] = ["", np.nan, np.nan, np.nan, f"{pair_rates(no_mark)['overall']:.1%}"]
    return table


def report(df: pd.DataFrame, metrics: list[Metric], title: str, markdown: bool) -> None:
    h = "###" if markdown else "==="
    print(f"\n{h} {title}")
    print("\nSpearman with severity (clean = 0; + means the metric worsens with the defect) of the best "
          "metric per defect, and the share of (clean, degraded copy) pairs the default ensemble orders "
          "clean first.")
    for split in ("tune", "heldout", "all"):
        part = df if split == "all" else df[df.split == split]
        if part.empty or (split == "all" and df.split.nunique() == 1):
            continue
        part = part.copy()
        if "ensemble" not in part or part["ensemble"].isna().all():
            part["ensemble"] = ensemble(part, metrics)
        print(f"\n{h}# {split}: {part.photo.nunique()} photos, {len(part)} images\n")
        print(_fmt(split_table(part, metrics), markdown))
        if split == "all":
            print("\nDefect x metric, pooled Spearman (each metric should track its own defect only):\n")
            print(_fmt(matrix(part, metrics), markdown))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=("all", "tune", "heldout"), default="all")
    p.add_argument("--severities", choices=("ladder", "shifted"), default="ladder")
    p.add_argument("--engine", action="store_true", help="score through `python -m curator score`")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)

    samples = build(args.split, args.severities)
    metrics = all_metrics()
    df, per_image = score_in_process(samples)
    report(df, metrics, f"In process, {args.severities} severities ({per_image * 1e3:.1f} ms per image, "
                        f"all classic scorers, one thread)", args.markdown)
    if args.engine:
        for fmt in ("png", "jpg"):
            report(run_engine(samples, fmt), metrics, f"Engine, {fmt.upper()} files, {args.severities} severities",
                   args.markdown)


if __name__ == "__main__":
    main()
