"""Train the degradation network on synthetic degradations of clean images.

One run from scratch, in under an hour on 2 CPU cores (51.5 min on a 2-core AMD EPYC machine on
2026-12-08); it gives the shipped degradation-v7.pt (on the same kind of CPU, see below):

    nice -n 5 python -m scorers.degradation train --out degradation.pt

(defaults: --steps 21000 --batch 32 --crop 192 --canvas-share 8 --reuse 4 --chunk 256 --lr 2e-3
--seed 0 --threads 2 --workers 2). The two cores take turns: both generate a chunk of 256 batches,
then both run the training step on them, four times over (as generated, then shuffled and
mirrored, upside down, and both). The step runs 1.7x faster on two threads than on one, and the
hour was short of steps rather than of fresh samples (BENCHMARKS.md).

Data recipe (all built on the fly from the seed, nothing downloaded; see data.py):
- clean sources: 10 photos shipped by scikit-image (astronaut, chelsea, coffee, motorcycle_left,
  camera, brick, grass, moon, coins) and matplotlib (grace_hopper.jpg; JPEG sources
  are halved first to erase their own blocks), 30% of samples; collages of those photos (dead
  leaves cut from their textures at random scales, turns and channel orders, half of them sharp
  subjects before a blurred or panned background), 30%; procedural images (random shapes,
  fractal clouds, stripe / checker / ring patterns, dead-leaves images, a few plain objects on a
  plain backdrop; rendered at 2x and area-reduced), 40%.
- each sample: a random crop of a source reduced (never enlarged) to a canvas whose longer side is
  320..416 px, random flip, mild gamma / saturation jitter; then 20% stay clean, the rest get each
  defect with probability 0.4 (at least one): colour cast, blur (Gaussian / motion / defocus /
  down-up), noise (Gaussian, chroma or luma, constant or signal-dependent like shot noise),
  watermark (random text in the training fonts, logos, positions, sizes, colours, rotations,
  tiling, opacity 0.15..1), JPEG quality 5..87; plus label-free exposure / contrast nuisances.
  Labels are the applied intensities, except the watermark's, which is its presence (data.py).
- each batch holds 32 distinct canvases, and the next seven batches degrade the same canvases
  again, each sample its own way (drawing canvases is most of the data cost). The network
  trains on 192 px crops, each generated batch four times (--reuse). The watermark map is
  trained per 16 px cell: 1 where the mark changed a pixel visibly, 0 where it changed none, left
  out of the loss where it only grazed the cell; the crop's watermark label follows its cells.
- held out entirely (for benchmarks/degradation_eval.py): other photos, the "landscape" family and
  the Liberation Serif / DejaVu Sans Mono fonts.

Canvas c is drawn from numpy's default_rng([seed, c]) and sample i degraded and cropped with
default_rng([seed, i, 1]), so a run is reproducible for a given seed, thread count, installed
fonts / library versions and CPU (the number of data workers does not matter). Across CPUs the bytes
differ (the same command on an Intel and an AMD machine gave two checkpoints, 0.876 and 0.881 on the
watermark pairs: BENCHMARKS.md).

Retrain on your own clean images (photos without the defects; they replace the built-in photos
with --no-builtin-photos, else they are added to them):

    python -m scorers.degradation train --clean-dir /path/to/clean --out my-degradation.pt

and score with it via the scorer option degradation_weights=my-degradation.pt. Or fine-tune the
shipped net on them, which takes a fraction of the time:

    python -m scorers.degradation train --clean-dir /path/to/clean --init scorers/degradation/degradation-v7.pt \
        --steps 3000 --lr 1e-3 --out my-degradation.pt
"""
from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from scorers.degradation import HEADS, net
from scorers.degradation import data as ddata


class SyntheticDegradations(Dataset):
    """Sample i: a degraded crop, its labels and label mask, and the watermark map's cell targets
    and cell mask.

    Each batch holds `batch` distinct clean canvases, and `share` consecutive batches reuse them
    (canvas (b // share) * batch + j for position j of batch b, drawn from rng([seed, canvas])), each
    sample under its own degradations and crop (rng([seed, i, 1])). Drawing canvases is three quarters
    of the data cost; spreading the reuse over batches keeps every batch's canvases distinct (the one
    run that shared canvases within a batch scored below unshared v4 on blur, noise, JPEG and colour
    cast, BENCHMARKS.md)."""

    def __init__(self, pool: ddata.CleanPool, length: int, seed: int, crop: int, share: int, batch: int) -> None:
        self.pool, self.length, self.seed, self.crop, self.share, self.batch = pool, length, seed, crop, share, batch
        self.fonts = ddata.split_fonts("train")
        self._cache: tuple[int, dict[int, np.ndarray]] = (-1, {})  # per process: the current group's canvases

    def __len__(self) -> int:
        return self.length

    def _canvas(self, i: int) -> np.ndarray:
        b, j = divmod(i, self.batch)
        group = b // self.share
        if self._cache[0] != group:
            self._cache = group, {}
        c = group * self.batch + j
        if c not in self._cache[1]:
            rng = np.random.default_rng([self.seed, c])
            self._cache[1][c] = self.pool.canvas(rng, int(rng.integers(320, 417)), min_short=self.crop)
        return self._cache[1][c]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        canvas = self._canvas(i)
        rng = np.random.default_rng([self.seed, i, 1])
        img, labels, alpha, _ = ddata.degrade_random(canvas, rng, self.fonts)
        ex = ddata.crop_example(img, labels, alpha, rng, self.crop, net.CELL)
        return tuple(torch.from_numpy(a) for a in (ex.image, ex.labels, ex.mask, ex.cells, ex.cell_mask))


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _bce_terms(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Elementwise BCE, zero where unlabelled: summed for the loss, and per column for the per-head log."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask


def _masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _bce_terms(logits, target, mask).sum() / mask.sum().clamp(min=1)


FLIPS = ((), (2,), (1,), (1, 2))  # dims of an (N, H, W[, C]) batch: as generated, mirrored, upside down, both


def reused(batches: Iterable[tuple[torch.Tensor, ...]], reuse: int, chunk: int, seed: int
           ) -> Iterator[tuple[torch.Tensor, ...]]:
    """Each chunk of `chunk` fresh batches as they come, then `reuse - 1` more passes over it, each
    in its own shuffled order and flipped another way (FLIPS; every label holds under a flip, and
    the watermark cell targets flip with the image).

    Why: on two cores the data worker and the training step used to run side by side, one core
    each. Taking turns instead, both cores generate a chunk, then the step runs on two threads,
    1.7x faster than on one (0.13 s against 0.22 s, BENCHMARKS.md), and the reuse keeps the
    generating turns short."""
    if reuse == 1:  # straight through: no chunk to wait for, so generating and training overlap
        yield from batches
        return
    order_rng = torch.Generator().manual_seed(seed)
    source = iter(batches)
    while fresh := list(itertools.islice(source, chunk)):
        yield from fresh
        for r in range(1, reuse):
            dims = FLIPS[r % len(FLIPS)]
            for k in torch.randperm(len(fresh), generator=order_rng).tolist():
                img, labels, mask, cells, cell_mask = fresh[k]
                yield (img.flip(dims), labels, mask, cells.flip(dims), cell_mask.flip(dims)) if dims else fresh[k]


def lr_at(step: int, steps: int, peak: float, warmup: int = 200) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(pool: ddata.CleanPool, out: Path, steps: int, batch: int, crop: int, lr: float, seed: int,
          threads: int, workers: int, log_every: int = 100, init: Path | None = None, share: int = 8,
          reuse: int = 1, chunk: int = 256) -> str:
    """Train (from scratch, or on from the checkpoint `init`) and write the checkpoint; returns its sha256."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(pool, out, steps, batch, crop, lr, seed, threads, workers, log_every, init, share, reuse, chunk)
    finally:
        torch.set_num_threads(previous_threads)


def _train(pool: ddata.CleanPool, out: Path, steps: int, batch: int, crop: int, lr: float, seed: int,
           threads: int, workers: int, log_every: int, init: Path | None, share: int, reuse: int,
           chunk: int) -> str:
    torch.manual_seed(seed)
    model = net.DegradationNet() if init is None else net.load_checkpoint(init)
    # channels_last: the same net, 1.4x faster training steps on CPU (measured, BENCHMARKS.md).
    model = model.to(memory_format=torch.channels_last)
    init_meta = {} if init is None else {"init_sha256": net.sha256(init)}  # the file as loaded
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    data = SyntheticDegradations(pool, math.ceil(steps / reuse) * batch, seed, crop, share, batch)
    # Workers are spawned, not forked: a fork inherits OpenCV's thread pool once the parent has
    # resized a large photo (a --clean-dir JPEG is halved on loading) and hangs on its first resize.
    loader = DataLoader(data, batch_size=batch, shuffle=False, num_workers=workers,
                        worker_init_fn=_worker_init if workers else None, persistent_workers=False,
                        multiprocessing_context="spawn" if workers else None)
    params = sum(p.numel() for p in model.parameters())
    print(f"training {params:,} parameters for {steps} steps of {batch} x {crop}px on "
          f"{len(pool.photos)} photos ({pool.collage_share:.0%} of their draws collages) + families "
          f"{list(pool.families)}", flush=True)
    start = time.time()
    # Each head's own loss is logged too: a head that does not learn (the colour-cast head in some
    # runs, BENCHMARKS.md) shows as a loss that stalls while the total falls.
    running, head_loss, head_n = 0.0, torch.zeros(len(HEADS)), torch.zeros(len(HEADS))
    model.train()
    for step, (img, labels, mask, cells, cell_mask) in enumerate(
            itertools.islice(reused(loader, reuse, chunk, seed), steps)):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        x = net.to_tensor(img.numpy()).contiguous(memory_format=torch.channels_last)
        logits, cell_logits = model.forward_maps(x)
        terms = _bce_terms(logits, labels, mask)
        loss = terms.sum() / mask.sum().clamp(min=1) + _masked_bce(cell_logits, cells, cell_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item()
        head_loss += terms.detach().sum(0)
        head_n += mask.sum(0)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = (step % log_every) + 1
            elapsed = time.time() - start
            heads = " ".join(f"{h} {v:.3f}" for h, v in zip(HEADS, (head_loss / head_n.clamp(min=1)).tolist()))
            print(f"step {step + 1}/{steps} loss {running / n:.4f} lr {lr_at(step, steps, lr):.2e} "
                  f"{elapsed / 60:.1f} min | heads {heads}", flush=True)
            running = 0.0
            head_loss.zero_()
            head_n.zero_()
    wall = time.time() - start
    # No wall time or other run-specific values: the same seed must give a byte-identical file.
    meta = {"seed": seed, "steps": steps, "batch": batch, "crop": crop, "share": share, "lr": lr, "threads": threads,
            "reuse": reuse, "chunk": chunk, "photos": len(pool.photos), "families": list(pool.families),
            "heads": list(HEADS), "torch": str(torch.__version__), **init_meta}
    digest = net.save_checkpoint(model.eval(), out, meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) sha256 {digest} in {wall / 60:.1f} min", flush=True)
    return digest


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m scorers.degradation train",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="checkpoint to write (+ .sha256 sidecar)")
    ap.add_argument("--steps", type=int, default=21000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=192, help="training crop side in pixels")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the training step")
    ap.add_argument("--workers", type=int, default=2,
                    help="data-generation processes (0 = in-process); the data never depends on it")
    ap.add_argument("--canvas-share", type=int, default=8,
                    help="consecutive samples that share a clean canvas, each degraded its own way")
    ap.add_argument("--reuse", type=int, default=4,
                    help="train on each generated batch this many times (flipped another way each time)")
    ap.add_argument("--chunk", type=int, default=256, help="batches generated in one turn before they are reused")
    ap.add_argument("--clean-dir", type=Path, action="append", default=[],
                    help="folder of your own clean images (repeatable)")
    ap.add_argument("--no-builtin-photos", action="store_true", help="train only on --clean-dir photos")
    ap.add_argument("--no-procedural", action="store_true", help="leave out the procedural images")
    ap.add_argument("--init", type=Path,
                    help="start from this checkpoint (e.g. the shipped one) instead of random weights")
    ap.add_argument("--log-every", type=int, default=100)
    args = ap.parse_args(argv)
    if args.reuse < 1 or args.chunk < 1:
        ap.error("--reuse and --chunk must be at least 1")
    if args.init is not None:  # checked before any photo is read
        if not args.init.is_file():
            ap.error(f"--init {args.init}: no such checkpoint")
        try:
            net.load_checkpoint(args.init)
        except ValueError as exc:  # a foreign or damaged file
            ap.error(f"--init: not a degradation checkpoint ({exc})")
    extra = [p for d in args.clean_dir for p in ddata.folder_photos(d, args.crop)]
    if args.clean_dir and not extra:
        ap.error(f"no readable images of at least --crop px in {', '.join(map(str, args.clean_dir))}")
    pool = ddata.CleanPool.builtin("train", extra, use_builtin_photos=not args.no_builtin_photos)
    if args.no_procedural:
        pool.families = ()
    if not pool.photos and not pool.families:
        ap.error("no clean sources: give --clean-dir or keep the built-in photos / procedural images")
    train(pool, args.out, args.steps, args.batch, args.crop, args.lr, args.seed, args.threads, args.workers,
          args.log_every, args.init, args.canvas_share, args.reuse, args.chunk)
    return 0
