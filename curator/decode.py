"""Reading and decoding an image once, safely, at the size the active scorers need.

Reads the file's bytes once (for the content hash and the decode), rejects decompression bombs from
the header before decoding, decodes JPEGs reduced with Pillow's draft mode when scorers need less than
full size, and normalises every mode (CMYK, 16-bit, palette, alpha, animated) to 8-bit RGB with EXIF
orientation applied. Failures raise DecodeError with a reason a person can act on.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from scorers.base import DecodedImage

MAX_PIXELS = int(os.environ.get("CURATOR_MAX_PIXELS", 120_000_000))
MAX_BYTES = int(os.environ.get("CURATOR_MAX_BYTES", 512 * 1024 * 1024))
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


class DecodeError(ValueError):
    """The file is not an image we can use; the message says why."""


@dataclass(frozen=True)
class ReadFile:
    data: bytes
    sha256: str


def read_file(path: Path) -> ReadFile:
    """The file's bytes and their sha256, read once."""
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise DecodeError(f"file is {size} bytes, over the {MAX_BYTES}-byte limit")
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise DecodeError(f"cannot read file: {e.strerror or e}") from e
    return ReadFile(data, hashlib.sha256(data).hexdigest())


def decode(data: bytes, rel: str, max_side: int | None) -> DecodedImage:
    """Decode to 8-bit RGB with the longer side >= `max_side` where the format allows reducing."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            return _decode_opened(img, rel, max_side)
        except DecodeError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DecodeError(f"decompression bomb refused: {e}") from e
        except UnidentifiedImageError:
            raise DecodeError("not a recognised image format") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise DecodeError(f"corrupt or truncated image data: {e}") from e
        except MemoryError:
            raise DecodeError("image too large to decode in memory") from None


def _decode_opened(img: Image.Image, rel: str, max_side: int | None) -> DecodedImage:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise DecodeError(f"invalid dimensions {w}x{h}")
    if w * h > MAX_PIXELS:
        raise DecodeError(f"decompression bomb refused: {w}x{h} = {w * h} pixels, over the {MAX_PIXELS} limit")
    fmt = img.format
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    original = (h, w) if orientation in _SWAPS_AXES else (w, h)
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    if fmt == "JPEG" and max_side and img.mode in ("RGB", "L") and max(w, h) > 2 * max_side:
        scale = max_side / max(w, h)
        img.draft(img.mode, (max(1, int(w * scale)), max(1, int(h * scale))))
    img.load()
    source_bits = 16 if img.mode.startswith("I") else 8
    rgb = _to_rgb8(img)
    if orientation not in (1, None):
        rgb = _orient(rgb, orientation)
    return DecodedImage(path=rel, rgb=np.ascontiguousarray(rgb), original_size=original,
                        format=fmt, source_bits=source_bits)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode == "L":
        return np.repeat(np.asarray(img)[..., None], 3, axis=2)
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        if mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA")).astype(np.float32)
        alpha = rgba[..., 3:4] / 255.0
        # Flatten onto white, as most trainers and viewers show transparent pixels.
        return (rgba[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.asarray(img.convert("RGB"))


def _orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an array (what ImageOps.exif_transpose does, without re-encoding)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.rot90(a[:, ::-1], 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a[:, ::-1], -1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(orientation))
    return op(rgb) if op else rgb

