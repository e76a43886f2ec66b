"""Degradation scorer: a small CNN trained in-project to spot blur, noise, JPEG artefacts, colour
casts and watermarks.

Unlike the other neural scorers its weights need no download: `scorers/degradation/degradation-v7.pt`
is trained here on synthetic degradations of clean images (see `scorers/degradation/train.py` for
the exact command and data recipe) and shipped in the repository. The file is verified against
WEIGHTS_SHA256 before use, so a corrupt or swapped file makes the scorer unavailable instead of
producing garbage. Retrained weights can be used with the option `degradation_weights=PATH`; they
are verified against the `PATH.sha256` file the training command writes, and their hash is part of
the stored run version so switching weights re-scores.

Command line: `python -m scorers.degradation train [...]` (see `--help`); the model lives in
`net.py`, the synthetic data in `data.py`, the training loop in `train.py`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scorers.base import Availability, DecodedImage, Metric, Scorer, WeightsUnavailable, register

HEADS = ("blur", "noise", "jpeg", "color_cast", "watermark")
WEIGHTS_PATH = Path(__file__).parent / "degradation-v7.pt"
WEIGHTS_SHA256 = "51f6875772930bd4282a597fbe4a81d07f6d79d1b93cabd8c81b4d26f2f8224d"
# overall = 1 - sum(w * head): the watermark counts most because no classic metric sees it.
OVERALL_WEIGHTS = {"blur": 0.2, "noise": 0.2, "jpeg": 0.15, "color_cast": 0.15, "watermark": 0.3}
_DESCRIPTIONS = {
    "blur": "predicted blur intensity (Gaussian, motion, defocus or upscaling), 0 = sharp",
    "noise": "predicted noise intensity (Gaussian or shot noise), 0 = clean",
    "jpeg": "predicted JPEG artefact intensity, 0 = none",
    "color_cast": "predicted colour-cast (white-balance) intensity, 0 = neutral",
    "watermark": "probability that a watermark / logo overlay is visible, 0 = none",
}


@register
class DegradationScorer(Scorer):
    """Per-defect intensities (and the watermark's presence) in 0..1 from the in-project degradation network.

    The classic scorers already measure blur, noise, JPEG and cast, so those heads carry a small
    default weight; the watermark head is this scorer's unique contribution and weighs fully. The
    overall score is a summary of the heads and carries no weight of its own (it would count them
    twice)."""

    name = "degradation"
    version = "7"
    description = "In-project CNN: blur / noise / JPEG / colour-cast intensities, watermark presence"
    input_size = 384
    option_help = {"degradation_weights": "a checkpoint from `python -m scorers.degradation train` "
                                          "(verified against its .sha256 sidecar) instead of the shipped one"}
    metrics = tuple(
        Metric(f"degradation_{h}", 0.0, 1.0, False, _DESCRIPTIONS[h], 1.0 if h == "watermark" else 0.25)
        for h in HEADS
    ) + (Metric("degradation_overall", 0.0, 1.0, True,
                "1 - weighted sum of the defect intensities (1 = no defect found)", 0.0),)

    def __init__(self, device: str = "cpu", cache_dir: Path | None = None,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(device, cache_dir, options)
        self._model: Any = None

    def _weights(self) -> tuple[Path, str | None]:
        """(checkpoint path, expected sha256 or None if its sidecar is missing)."""
        custom = self.options.get("degradation_weights")
        if not custom:
            return WEIGHTS_PATH, WEIGHTS_SHA256
        path = Path(custom)
        sidecar = path.with_name(path.name + ".sha256")
        return path, sidecar.read_text().split()[0] if sidecar.is_file() else None

    def run_version(self) -> str:
        path, expected = self._weights()
        return self.version if path == WEIGHTS_PATH else f"{self.version}+{(expected or 'unverified')[:12]}"

    def availability(self) -> Availability:
        path, expected = self._weights()
        if not path.is_file():
            return Availability(False, f"checkpoint {path} is missing")
        if expected is None:
            return Availability(False, f"no {path.name}.sha256 beside {path} to verify it against")
        return Availability(True)

    def load(self) -> None:
        if self._model is not None:
            return
        status = self.availability()
        if not status.ok:
            raise WeightsUnavailable(status.reason)
        path, expected = self._weights()
        from scorers.degradation import net

        actual = net.sha256(path)
        if actual != expected:
            raise WeightsUnavailable(f"checkpoint {path} is corrupt or not the expected one "
                                     f"(sha256 {actual[:12]}..., expected {str(expected)[:12]}...)")
        try:
            model = net.load_checkpoint(path)
        except Exception as exc:  # a verified file that still fails to load is a packaging bug
            raise WeightsUnavailable(f"checkpoint {path} could not be loaded: {exc}") from exc
        if tuple(model.config["heads"]) != HEADS:
            raise WeightsUnavailable(f"checkpoint {path} has heads {model.config['heads']}, expected {HEADS}")
        import torch

        from scorers.base import resolve_device

        self._torch = torch
        self._net = net
        self._dev = resolve_device(self.device)
        self._model = net.fold_batchnorm(model).to(self._dev)

    def unload(self) -> None:
        self._model = None

    def score_batch(self, images: Sequence[DecodedImage]) -> list[dict[str, float | None]]:
        self.load()
        arrays = [im.at(self.input_size) for im in images]
        probs = np.zeros((len(arrays), len(HEADS)), np.float32)
        # Fully convolutional: images of one shape share a forward pass, others go separately.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            by_shape.setdefault(a.shape, []).append(i)
        with self._torch.inference_mode():
            for idx in by_shape.values():
                x = self._net.to_tensor(np.stack([arrays[i] for i in idx])).to(self._dev)
                probs[idx] = self._torch.sigmoid(self._model(x)).float().cpu().numpy()
        weights = np.array([OVERALL_WEIGHTS[h] for h in HEADS], np.float32)
        out = []
        for p in probs:
            row: dict[str, float | None] = {f"degradation_{h}": float(v) for h, v in zip(HEADS, p)}
            row["degradation_overall"] = float(np.clip(1.0 - float(weights @ p), 0.0, 1.0))
            out.append(row)
        return out
