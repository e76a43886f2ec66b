"""The degradation network and its checkpoint format (imports torch: load this module lazily).

A small fully convolutional net: a strided stem keeps pixel-level evidence (noise grain, 8x8 JPEG
block edges, watermark strokes), depthwise-separable stages widen the receptive field, and global
average + max pooling feeds one small sigmoid head per defect. Average pooling suits defects that
cover the whole image (blur, noise, JPEG, cast); max pooling lets a local watermark in one corner
still fire. Being fully convolutional, it scores any image size, so the scorer feeds the whole
resized image rather than crops.

Checkpoint: a dict {"format", "config", "state_dict"} of tensors and JSON-able values only, so it
loads with `torch.load(weights_only=True)` and cannot execute code.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "curator-degradation-v1"
DEFAULT_CONFIG: dict[str, Any] = {"widths": [16, 32, 64, 128, 160], "hidden": 64,
                                  "heads": ["blur", "noise", "jpeg", "color_cast", "watermark"]}
MEAN, STD = 0.5, 0.25


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Separable(nn.Module):
    """Depthwise 3x3 + pointwise 1x1; residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.act(y + x if self.residual else y)


class DegradationNet(nn.Module):
    """Shared backbone, one logit per defect head."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = dict(DEFAULT_CONFIG if config is None else config)
        w = self.config["widths"]
        layers: list[nn.Module] = [_conv(3, w[0], 2), _conv(w[0], w[1], 2), _Separable(w[1], w[1], 1)]
        for cin, cout in zip(w[1:-1], w[2:]):
            layers += [_Separable(cin, cout, 2), _Separable(cout, cout, 1)]
        self.backbone = nn.Sequential(*layers)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * w[-1], self.config["hidden"]), nn.ReLU(inplace=True),
                          nn.Linear(self.config["hidden"], 1))
            for _ in self.config["heads"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) normalised RGB -> (N, heads) logits."""
        f = self.backbone(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return torch.cat([head(pooled) for head in self.heads], dim=1)


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> normalised (N, 3, H, W) float32."""
    t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return (t / 255.0 - MEAN) / STD


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(model: DegradationNet, path: Path, meta: dict[str, Any]) -> str:
    """Write the checkpoint (float32 state_dict, config, JSON-able meta) and a `.sha256` sidecar;
    returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "config": model.config, "meta": meta, "state_dict": state}, path)
    digest = sha256(path)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def load_checkpoint(path: Path) -> DegradationNet:
    """Build the net from a checkpoint; raises ValueError when the file is not one of ours."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint")
    model = DegradationNet(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
