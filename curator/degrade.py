"""Synthetic image degradations at controlled severity.

Shared by the classic-metric evaluation ladder, the demo dataset, and the degradation network's
training data. Every function takes and returns an RGB uint8 array and never mutates its input.
`LADDER` maps each defect to a function of (image, level in 1..LEVELS) with severity growing in level.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

LEVELS = 5
_FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path(ImageFont.__file__).parent)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def motion_blur(img: np.ndarray, length: int, angle_deg: float = 0.0) -> np.ndarray:
    """Linear motion blur: a line kernel of `length` pixels at `angle_deg`."""
    length = max(1, int(length))
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    k /= max(k.sum(), 1e-6)
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator | None = None,
                   chroma: bool = True) -> np.ndarray:
    """Additive Gaussian noise of std `sigma` (0..255 scale), per channel or luma-only."""
    rng = rng or np.random.default_rng(0)
    shape = img.shape if chroma else img.shape[:2] + (1,)
    noisy = img.astype(np.float32) + rng.normal(0.0, sigma, shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def poisson_noise(img: np.ndarray, photons: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Shot noise as from a sensor catching `photons` at full white (fewer = noisier)."""
    rng = rng or np.random.default_rng(0)
    lam = img.astype(np.float64) / 255.0 * photons
    return np.clip(rng.poisson(lam) / photons * 255.0, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def exposure(img: np.ndarray, ev: float) -> np.ndarray:
    """Change exposure by `ev` stops in linear light; positive values clip highlights like a sensor."""
    lin = _srgb_to_linear(img.astype(np.float32) / 255.0) * (2.0 ** ev)
    return np.round(_linear_to_srgb(lin) * 255.0).astype(np.uint8)


def low_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend towards the image's mean gray; `factor` 1 keeps it, 0 gives a flat image."""
    f = img.astype(np.float32)
    mean = f.mean()
    return np.clip(mean + (f - mean) * factor, 0, 255).astype(np.uint8)


def color_cast(img: np.ndarray, tint: tuple[float, float, float], strength: float) -> np.ndarray:
    """Shift channel gains towards `tint` (an RGB direction) as a wrong white balance would."""
    t = np.asarray(tint, np.float32)
    t = t / max(float(t.mean()), 1e-6)
    gains = 1.0 + strength * (t - 1.0)
    return np.clip(img.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def down_up(img: np.ndarray, factor: float) -> np.ndarray:
    """Downscale by `factor` and back up, as an upscaled low-resolution source looks."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@cache
def font_files() -> tuple[Path, ...]:
    """TrueType fonts available on this machine (Debian fonts, then Pillow's bundled ones)."""
    found: list[Path] = []
    for d in _FONT_DIRS:
        if d.is_dir():
            found += sorted(p for p in d.rglob("*.ttf"))
    return tuple(found)


def _font(size: int, font_path: Path | None) -> ImageFont.ImageFont:
    if font_path is not None:
        return ImageFont.truetype(str(font_path), size)
    files = font_files()
    return ImageFont.truetype(str(files[0]), size) if files else ImageFont.load_default(size)


def text_alpha(shape: tuple[int, int], text: str, scale: float = 0.08,
               position: tuple[float, float] = (0.5, 0.5), angle: float = 0.0,
               font_path: Path | None = None, tiled: bool = False) -> np.ndarray:
    """Coverage (float32 0..1, shape `shape` = (h, w)) of `text` drawn as `watermark` draws it.

    Separate from the blending so callers can know where a watermark is (e.g. to label crops)."""
    h, w = shape
    size = max(8, int(h * scale))
    font = _font(size, font_path)
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = max(1, right - left), max(1, bottom - top)
    if tiled:
        for y in range(-th, h + th, int(th * 3)):
            for x in range(-tw, w + tw, int(tw * 1.5)):
                draw.text((x + (y // (3 * th)) % 2 * tw // 2, y), text, fill=255, font=font)
    else:
        x = int(position[0] * (w - tw)) - left
        y = int(position[1] * (h - th)) - top
        draw.text((x, y), text, fill=255, font=font)
    if angle:
        layer = layer.rotate(angle, resample=Image.BILINEAR, center=(w / 2, h / 2))
    return np.asarray(layer, np.float32) / 255.0


def logo_alpha(shape: tuple[int, int], rng: np.random.Generator, scale: float = 0.2,
               position: tuple[float, float] = (0.5, 0.5), angle: float = 0.0,
               font_path: Path | None = None) -> np.ndarray:
    """Coverage of a simple random logo (ring, badge with a letter, star, or framed initials).

    `scale` is the logo's height as a fraction of image height. Logos are drawn at 4x and reduced,
    so their edges are anti-aliased like a designed mark rather than jagged."""
    h, w = shape
    side = max(12, int(h * scale))
    ss = 4 * side
    layer = Image.new("L", (ss, ss), 0)
    draw = ImageDraw.Draw(layer)
    kind = int(rng.integers(4))
    stroke = max(4, int(ss * rng.uniform(0.04, 0.12)))
    letters = "".join(chr(int(c)) for c in rng.integers(ord("A"), ord("Z") + 1, size=int(rng.integers(1, 3))))
    font = _font(int(ss * 0.5), font_path)
    if kind == 0:
        draw.ellipse((stroke, stroke, ss - stroke, ss - stroke), outline=255, width=stroke)
    elif kind == 1:
        draw.ellipse((0, 0, ss - 1, ss - 1), fill=255)
        draw.text((ss / 2, ss / 2), letters, fill=0, font=font, anchor="mm")
    elif kind == 2:
        n = int(rng.integers(5, 9))
        t = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
        rad = np.where(np.arange(2 * n) % 2 == 0, 0.48, rng.uniform(0.2, 0.35)) * ss
        draw.polygon([(ss / 2 + r * np.cos(a), ss / 2 + r * np.sin(a)) for r, a in zip(rad, t)], fill=255)
    else:
        draw.rounded_rectangle((stroke, stroke, ss - stroke, ss - stroke), radius=ss // 6, outline=255,
                               width=stroke)
        draw.text((ss / 2, ss / 2), letters, fill=255, font=font, anchor="mm")
    mark = layer.resize((side, side), Image.BOX)
    if angle:
        mark = mark.rotate(angle, resample=Image.BILINEAR, expand=True)
    canvas = Image.new("L", (w, h), 0)
    x = int(position[0] * (w - mark.width))
    y = int(position[1] * (h - mark.height))
    canvas.paste(mark, (x, y))
    return np.asarray(canvas, np.float32) / 255.0


def blend_overlay(img: np.ndarray, alpha: np.ndarray, color: tuple[int, int, int],
                  opacity: float) -> np.ndarray:
    """Alpha-blend a flat `color` over the image where `alpha` (h, w, 0..1) covers it."""
    a = alpha[..., None] * opacity
    out = img.astype(np.float32) * (1 - a) + np.asarray(color, np.float32) * a
    return np.clip(out, 0, 255).astype(np.uint8)


def watermark(img: np.ndarray, text: str = "© SAMPLE STOCK", opacity: float = 0.5,
              scale: float = 0.08, position: tuple[float, float] = (0.5, 0.5),
              color: tuple[int, int, int] = (255, 255, 255), angle: float = 0.0,
              font_path: Path | None = None, tiled: bool = False) -> np.ndarray:
    """Alpha-blend `text` over the image; `scale` is the text height as a fraction of image height."""
    alpha = text_alpha(img.shape[:2], text, scale, position, angle, font_path, tiled)
    return blend_overlay(img, alpha, color, opacity)


def defocus_blur(img: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur: convolution with an anti-aliased disk of `radius` pixels."""
    r = max(0.5, float(radius))
    n = 2 * int(np.ceil(r)) + 1
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    k = np.clip(r + 0.5 - np.hypot(xx, yy), 0.0, 1.0).astype(np.float32)
    return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


# Severity ladders for evaluation and the demo: level 1 is mild, LEVELS is severe.
LADDER: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "gaussian_blur": lambda im, k: gaussian_blur(im, (0.6, 1.2, 2.0, 3.0, 4.5)[k - 1]),
    "motion_blur": lambda im, k: motion_blur(im, (3, 5, 9, 15, 23)[k - 1], 30.0),
    "noise": lambda im, k: gaussian_noise(im, (4, 8, 15, 25, 40)[k - 1], np.random.default_rng(k)),
    "jpeg": lambda im, k: jpeg(im, (60, 40, 25, 12, 5)[k - 1]),
    "underexposure": lambda im, k: exposure(im, -(0.7, 1.4, 2.1, 2.8, 3.5)[k - 1]),
    "overexposure": lambda im, k: exposure(im, (0.5, 1.0, 1.5, 2.0, 2.5)[k - 1]),
    "low_contrast": lambda im, k: low_contrast(im, (0.75, 0.55, 0.4, 0.25, 0.12)[k - 1]),
    "color_cast": lambda im, k: color_cast(im, (1.0, 0.75, 0.35), (0.15, 0.3, 0.45, 0.6, 0.8)[k - 1]),
    "watermark": lambda im, k: watermark(im, opacity=(0.2, 0.35, 0.5, 0.7, 0.9)[k - 1], tiled=k >= 3),
    "down_up": lambda im, k: down_up(im, (1.5, 2.0, 3.0, 4.0, 6.0)[k - 1]),
}
