"""Side by side: the degradation scorer with BatchNorm folded into its convolutions (as shipped)
against the same checkpoint unfolded, on the same 1024 x 768 images at batch 32, resize included.
Rounds alternate so machine drift hits both alike; also checks the outputs agree.

    python -m benchmarks.degradation_fold [--images 128] [--rounds 3]
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.degradation_eval import decoded, throughput
from scorers.degradation import WEIGHTS_PATH, DegradationScorer, net
from scorers.degradation import data as ddata


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = [ddata.procedural("landscape", rng, 768, 1024) for _ in range(args.images)]
    folded = DegradationScorer(device="cpu")
    folded.load()
    unfolded = DegradationScorer(device="cpu")
    unfolded.load()
    unfolded._model = net.load_checkpoint(WEIGHTS_PATH)  # the trained net as is, BatchNorm kept
    rates: dict[str, list[float]] = {"folded": [], "unfolded": []}
    for _ in range(args.rounds):
        rates["unfolded"].append(throughput(unfolded, images))
        rates["folded"].append(throughput(folded, images))
    a, b = folded.score_batch(decoded(images[:32])), unfolded.score_batch(decoded(images[:32]))
    worst = max(abs(x[m] - y[m]) for x, y in zip(a, b) for m in x)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    print(f"images/s, median of {args.rounds} alternating rounds: folded {med['folded']:.1f}, "
          f"unfolded {med['unfolded']:.1f}, ratio {med['folded'] / med['unfolded']:.2f}; "
          f"largest score difference {worst:.1e}")


if __name__ == "__main__":
    main()
