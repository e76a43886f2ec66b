"""The degradation network and its checkpoint format (imports torch: load this module lazily).

A small fully convolutional net: a strided stem keeps pixel-level evidence (noise grain, 8x8 JPEG
block edges, watermark strokes), depthwise-separable stages widen the receptive field, and global
average + max pooling feeds one small sigmoid head per whole-image defect (blur, noise, JPEG, cast);
the cast head also reads a small colour branch of its own over the image reduced 8x.

A watermark is local (a credit in one corner), so its head is a map instead: one logit per 16 x 16
pixel cell, from the stride-16 features joined with the (upsampled) stride-32 ones, trained on where
the mark visibly is (training knows which pixels it changed); the image's watermark logit is the
map's maximum. Per-cell targets give the net hundreds of labelled locations per image instead of
one label, which is what lets it learn faint and small marks from synthetic data at all. Being
fully convolutional, the net scores any image size, so the scorer feeds the whole resized image
rather than crops.

Checkpoint: a dict {"format", "config", "state_dict"} of tensors and JSON-able values only, so it
loads with `torch.load(weights_only=True)` and cannot execute code.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "curator-degradation-v2"
CELL = 16  # watermark map cell side in input pixels (the stride of the features it reads)
COLOR_REDUCTION = 8  # the colour branch reads the image average-pooled by this factor
DEFAULT_CONFIG: dict[str, Any] = {"widths": [16, 48, 96, 192, 256], "hidden": 64, "color_branch": 32,
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


def _at_least(x: torch.Tensor, side: int) -> torch.Tensor:
    """x edge-padded to at least `side` pixels each way: the colour branch's pooling needs a full
    window, and a thin strip (3 x 300) or a 1-pixel image must still score. Larger images pass unchanged."""
    h, w = x.shape[2:]
    if h >= side and w >= side:
        return x
    return nn.functional.pad(x, (0, max(0, side - w), 0, max(0, side - h)), mode="replicate")


class DegradationNet(nn.Module):
    """Shared backbone; pooled heads for whole-image defects, a cell map for the watermark."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = dict(DEFAULT_CONFIG if config is None else config)
        w, heads = self.config["widths"], self.config["heads"]
        self.mark = heads.index("watermark")
        layers: list[nn.Module] = [_conv(3, w[0], 2), _conv(w[0], w[1], 2), _Separable(w[1], w[1], 1)]
        for cin, cout in zip(w[1:-2], w[2:-1]):
            layers += [_Separable(cin, cout, 2), _Separable(cout, cout, 1)]
        self.to_stride16 = nn.Sequential(*layers)
        self.to_stride32 = nn.Sequential(_Separable(w[-2], w[-1], 2), _Separable(w[-1], w[-1], 1))
        # The colour-cast head also reads a branch of its own (`color_branch` channels; older configs
        # have none and load unchanged): two convolutions over the image reduced 8x, mean and max
        # pooled. Colour is global, so the reduction loses little (at 4x the step cost 15% more). On
        # the backbone's pooled features alone, shared with four other tasks, that head failed to
        # train in three of six runs (BENCHMARKS.md).
        width = self.config.get("color_branch", 0)
        pooled_heads = [h for h in heads if h != "watermark"]
        self.cast = pooled_heads.index("color_cast") if width else None
        if width:
            self.color = nn.Sequential(nn.AvgPool2d(COLOR_REDUCTION), _conv(3, width, 1),
                                       nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width),
                                       nn.ReLU(inplace=True))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * w[-1] + (2 * width if h == "color_cast" else 0), self.config["hidden"]),
                          nn.ReLU(inplace=True), nn.Linear(self.config["hidden"], 1))
            for h in heads if h != "watermark")
        self.mark_map = nn.Sequential(nn.Conv2d(w[-2] + w[-1], self.config["hidden"], 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(self.config["hidden"], 1, 1))

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, H, W) normalised RGB -> ((N, heads) logits, (N, ceil(H/16), ceil(W/16)) watermark
        cell logits)."""
        f16 = self.to_stride16(x)
        f32 = self.to_stride32(f16)
        pooled = torch.cat([f32.mean(dim=(2, 3)), f32.amax(dim=(2, 3))], dim=1)
        up = nn.functional.interpolate(f32, size=f16.shape[2:], mode="nearest")
        cells = self.mark_map(torch.cat([f16, up], dim=1))[:, 0]
        inputs = [pooled] * len(self.heads)  # one per pooled head, in order (the watermark has none)
        if self.cast is not None:
            c = self.color(_at_least(x, COLOR_REDUCTION))
            inputs[self.cast] = torch.cat([pooled, c.mean(dim=(2, 3)), c.amax(dim=(2, 3))], dim=1)
        logits = [head(v) for head, v in zip(self.heads, inputs)]
        logits.insert(self.mark, cells.amax(dim=(1, 2))[:, None])
        return torch.cat(logits, dim=1), cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) normalised RGB -> (N, heads) logits."""
        return self.forward_maps(x)[0]


def fold_batchnorm(model: DegradationNet) -> DegradationNet:
    """Fold every BatchNorm into the convolution before it, in place, for inference.

    In eval mode a BatchNorm is a fixed per-channel affine map, so the conv can absorb it: same
    outputs to float rounding, and about a quarter less CPU time in the net (BatchNorm was 31% of
    it, profiled). Training needs the BatchNorms, so only the scorer folds."""
    model.eval()
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = nn.utils.fusion.fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


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
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    # Through a buffer: torch.save names the zip's records after the file it writes, so saving to a
    # path would make the bytes (and the sha256) depend on the output's name.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "config": model.config, "meta": meta, "state_dict": state}, buffer)
    path.write_bytes(buffer.getvalue())
    digest = sha256(path)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def load_checkpoint(path: Path) -> DegradationNet:
    """Build the net from a checkpoint; raises ValueError when the file is not one of ours."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:  # missing or unreadable: the OS's message says so already
        raise
    except Exception as exc:  # torch's own messages here are about pickling, not about the file
        raise ValueError(f"{path} is not a torch checkpoint file") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint")
    model = DegradationNet(ckpt["config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match its own config: {str(exc).splitlines()[0]}") from exc
    return model.eval()
