"""Images per second of the CLIP image pass, for a device and batch sizes, with random-init weights.

The real ViT-L/14 weights are not needed to time the pass: the architecture, precision and input size
are what cost, so this builds open_clip's "ViT-L-14" (QuickGELU, as the OpenAI weights use) with
random weights. That is for timing only; the scorers never run a model that is not the pinned one.

Two numbers per batch size:
- forward: `encode_image` on ready 224 x 224 tensors already on the device (the GPU's share);
- scorer pass: `ClipEncoder.embed` on decoded RGB images of `--image-size`, i.e. what the aesthetic
  and CLIP-IQA scorers pay per image: PIL bicubic resize + crop + normalise on the CPU, transfer,
  forward, L2 normalisation.
CUDA out-of-memory at a batch size is reported, not fatal.

    python -m benchmarks.clip_throughput --device cuda --batch-size 16,64,256 [--precision auto]
    python -m benchmarks.clip_throughput --device cpu --batch-size 4 --iters 3
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace

import numpy as np
import torch

from scorers.base import DecodedImage, resolve_device
from scorers.clip import VIT_L_14, ClipEncoder, precision_for


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def timed(fn, device: str, iters: int, warmup: int) -> float:
    """Median seconds per call after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(model, encoder: ClipEncoder, device: str, batch: int, side: int, size: tuple[int, int],
            iters: int, warmup: int) -> dict:
    """Images/s of the bare forward and of the scorer pass at one batch size (or the OOM error)."""
    width, height = size
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(batch)]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:
        pixels = torch.randn(batch, 3, side, side, device=device, dtype=encoder.dtype)
        with torch.inference_mode():
            forward = timed(lambda: model.encode_image(pixels), device, iters, warmup)
        full = timed(lambda: encoder.embed([DecodedImage("x", a, size) for a in rgb]), device, max(1, iters // 2), 1)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"batch": batch, "error": "CUDA out of memory"}
    row = {"batch": batch, "forward_images_per_s": batch / forward, "scorer_pass_images_per_s": batch / full}
    if device.startswith("cuda"):
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", default="32", help="one or more, comma-separated")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    parser.add_argument("--model", default=VIT_L_14.model_name)
    parser.add_argument("--image-size", default="1024x768", help="WxH of the decoded images for the scorer pass")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON object per batch size instead of a table")
    args = parser.parse_args()

    import open_clip

    device = resolve_device(args.device)
    precision = precision_for(device) if args.precision == "auto" else args.precision
    torch.manual_seed(0)
    model = open_clip.create_model(args.model, force_quick_gelu=True, precision=precision, device=device).eval()
    encoder = ClipEncoder(replace(VIT_L_14, model_name=args.model), model, device, batch_limit=None)
    side = model.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    size = tuple(int(v) for v in args.image_size.lower().split("x"))
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    header = {"model": args.model, "device": device, "gpu": gpu, "precision": precision, "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "image_size": args.image_size}
    if not args.json:
        print(" ".join(f"{k}={v}" for k, v in header.items() if v))
        print(f"{'batch':>6} {'forward img/s':>14} {'scorer pass img/s':>18} {'peak GPU MiB':>13}")
    for batch in (int(b) for b in args.batch_size.split(",")):
        row = measure(model, encoder, device, batch, side, size, args.iters, args.warmup)
        if args.json:
            print(json.dumps(dict(header, **row)))
        elif "error" in row:
            print(f"{batch:>6} {row['error']:>33}")
        else:
            peak = f"{row['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in row else "-"
            print(f"{batch:>6} {row['forward_images_per_s']:>14.1f} {row['scorer_pass_images_per_s']:>18.1f} "
                  f"{peak:>13}")


if __name__ == "__main__":
    main()
