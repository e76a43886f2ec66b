"""Classic (weight-free) quality scorers: sharpness, noise, JPEG blocking, exposure, contrast, colour,
resolution.

Every measurement is made at a fixed analysis scale (the longer side at most `ANALYSIS_SIDE` for
pixel-level defects, `STATS_SIDE` for global tone and colour statistics), so a value means the same
thing for a 640 px and a 6000 px photo: what a trainer working at about 1024 px would see.

The metrics that drive the default ensemble have closed ranges on which a clean photo sits at the
good end, and each is built to stay flat under the other defects: sharpness is corrected for the
measured noise, noise is separated from fine texture across scales, exposure is measured in stops so
that contrast changes do not read as exposure changes, and so on. Raw, informational quantities
(colourfulness, clipping fractions, megapixels, aspect ratio) have weight 0.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import cv2
import numpy as np

from scorers.base import DecodedImage, Metric, Scorer, register

ANALYSIS_SIDE = 1024
STATS_SIDE = 256
_MIN_SIDE = 16  # below this, pixel-level measurements are meaningless and return None

Result = dict[str, float | None]


def _cached(image: DecodedImage, key: str, compute: Callable[[], object]) -> object:
    """Share an intermediate result between the classic scorers scoring the same image."""
    full = f"classic.{key}"
    if full not in image.features:
        image.features[full] = compute()
    return image.features[full]


def _gray(image: DecodedImage, side: int) -> np.ndarray:
    """float32 luma (0..255) with the longer side at most `side`."""
    return _cached(image, f"gray{side}", lambda: image.gray_at(side).astype(np.float32))  # type: ignore[return-value]


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _finite(x: float, lo: float, hi: float) -> float:
    """Clamp to [lo, hi], mapping NaN to lo, so no metric ever leaves its declared range."""
    return float(min(max(x, lo), hi)) if math.isfinite(x) else lo


# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------

# Immerkær's operator: zero response to planes and to most natural structure, 6 * sigma to white noise.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_NOISE_BLOCK = 32


def _blocks(a: np.ndarray, b: int) -> np.ndarray:
    """View of `a` as (rows, b, cols, b) blocks, dropping the ragged edge."""
    h, w = a.shape[0] // b * b, a.shape[1] // b * b
    return a[:h, :w].reshape(h // b, b, w // b, b)


def _highpass_energy(g: np.ndarray, b: int) -> np.ndarray:
    """Per-block mean squared Immerkær response / 36: the noise variance for white noise."""
    r = cv2.filter2D(g, -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT)
    return _blocks(r * r, b).mean(axis=(1, 3)) / 36.0


def _halve(g: np.ndarray) -> np.ndarray:
    h, w = g.shape
    return cv2.resize(g[: h // 2 * 2, : w // 2 * 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def noise_sigma(g: np.ndarray) -> float | None:
    """Standard deviation of white noise in luma levels, separated from texture across three scales.

    Per block, the high-pass energy at scales 1, 1/2 and 1/4 is e_k = n^2 / 4^k + T * beta^k: white
    noise loses 3/4 of its energy per halving while texture follows a power law. Three equations give
    n^2 in closed form, so fine texture (grass, gravel) is not read as noise and blur, which removes
    texture, does not read as denoising. Blocks touching clipped values are skipped (clipping hides
    noise). The median block is returned.
    """
    h, w = g.shape
    b = _NOISE_BLOCK
    while b > 8 and min(h, w) < 4 * b:
        b //= 2
    if min(h, w) < 4 * b:
        return None
    g = g[: h // 4 * 4, : w // 4 * 4]
    g2 = _halve(g)
    g4 = _halve(g2)
    e1, e2, e3 = _highpass_energy(g, b), _highpass_energy(g2, b // 2), _highpass_energy(g4, b // 4)
    n = min(e1.shape[0], e2.shape[0], e3.shape[0]), min(e1.shape[1], e2.shape[1], e3.shape[1])
    e1, e2, e3 = e1[: n[0], : n[1]], e2[: n[0], : n[1]], e3[: n[0], : n[1]]
    blocks = _blocks(g, b)
    unclipped = ((blocks.min(axis=(1, 3)) > 2) & (blocks.max(axis=(1, 3)) < 253))[: n[0], : n[1]]
    if unclipped.sum() >= 4:
        e1, e2, e3 = e1[unclipped], e2[unclipped], e3[unclipped]
    den = e3 + e1 / 16 - e2 / 2
    safe = np.where(np.abs(den) < 1e-6, 1e-6, den)
    n2 = np.clip((e1 * e3 - e2 * e2) / safe, 0.0, e1)
    return float(np.sqrt(np.median(n2)))


def _noise(image: DecodedImage) -> float | None:
    return _cached(image, "noise", lambda: noise_sigma(_gray(image, ANALYSIS_SIDE)))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Sharpness
# ----------------------------------------------------------------------------------------------

_S1 = 1.0  # derivative-of-Gaussian scale of the measurement
_SR = 2.0  # extra blur of the re-blurred copy
_S2 = math.hypot(_S1, _SR)
_ORIENTATIONS = 6
_TOP_EDGES = 0.1
_EDGE_SNR = 4.0
_MIN_EDGES = 10


def _gradients(g: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    blurred = cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REFLECT)
    return gx, gy


def _noise_gain(sigma: float) -> float:
    """Variance of one gradient component per unit of white-noise variance at scale `sigma`."""
    impulse = np.zeros((61, 61), np.float32)
    impulse[30, 30] = 1.0
    gx, _ = _gradients(impulse, sigma)
    return float((gx * gx).sum())


_GAIN1, _GAIN2 = _noise_gain(_S1), _noise_gain(_S2)


def edge_width(g: np.ndarray, sigma_n: float) -> float | None:
    """Blur of the strongest edges, as a Gaussian sigma in pixels (the re-blur gradient ratio).

    A step edge blurred by s has gradient peak proportional to 1/sqrt(s^2 + s1^2) at measurement
    scale s1, so the ratio of peak gradients measured at s1 and at s2 gives s. The expected noise
    energy is subtracted from both gradients, so noise does not make edges look sharper, and only
    edges well above the noise are used. Edges are grouped by orientation and the blurriest
    orientation is reported, which catches motion blur (sharp along the motion, smeared across it).
    Returns None when the image has no usable edges.
    """
    gx1, gy1 = _gradients(g, _S1)
    gx2, gy2 = _gradients(g, _S2)
    nv = sigma_n * sigma_n
    e1 = gx1 * gx1 + gy1 * gy1 - 2 * _GAIN1 * nv
    e2 = gx2 * gx2 + gy2 * gy2 - 2 * _GAIN2 * nv
    m2 = np.sqrt(np.maximum(e2, 0.0))
    floor = _EDGE_SNR * math.sqrt(2 * _GAIN2) * sigma_n + 1.0
    peaks = (m2 >= cv2.dilate(m2, np.ones((3, 3), np.uint8))) & (m2 > floor)
    ys, xs = np.nonzero(peaks)
    if ys.size < _MIN_EDGES:
        return None
    strength, p1, p2 = m2[ys, xs], e1[ys, xs], e2[ys, xs]
    angle = np.arctan2(gy2[ys, xs], gx2[ys, xs]) % np.pi
    bins = np.minimum((angle * (_ORIENTATIONS / np.pi)).astype(np.int64), _ORIENTATIONS - 1)
    widths = []
    for k in range(_ORIENTATIONS):
        sel = bins == k
        if sel.sum() < _MIN_EDGES:
            continue
        s = strength[sel]
        top = s >= np.quantile(s, 1 - _TOP_EDGES)
        if top.sum() < _MIN_EDGES:
            top = np.ones_like(s, bool)
        r2 = float(np.clip(p2[sel][top].sum() / max(float(p1[sel][top].sum()), 1e-6), 0.0, 0.999))
        widths.append(math.sqrt(max((r2 * _S2 ** 2 - _S1 ** 2) / (1 - r2), 0.0)))
    return max(widths) if widths else None


# ----------------------------------------------------------------------------------------------
# JPEG blocking
# ----------------------------------------------------------------------------------------------

_BLOCK_CROP = 1024
_STEP_CLIP = 12.0  # luma levels: block seams are small steps; larger steps are scene edges


def _seam_strength(d: np.ndarray, period: float) -> float:
    """Share of the mean column profile of |steps| that repeats with `period` (0 = none, 1 = all)."""
    profile = np.minimum(d, _STEP_CLIP).mean(axis=0).astype(np.float64)
    total = profile.sum()
    if profile.size < 2 * period or total <= 1e-9:
        return 0.0
    x = np.arange(profile.size)
    coef = np.abs(np.dot(profile, np.exp(-2j * np.pi * x / period)))
    return float(coef / total)


def jpeg_blockiness(image: DecodedImage) -> float | None:
    """Strength of the 8x8 JPEG block grid, from pixels alone (works on JPEGs re-saved as PNG).

    Block seams are small luma steps every 8 pixels in both directions. The step profile, averaged
    along each axis, is tested at the grid frequency with a Fourier coefficient, so the grid is found
    whatever its phase (cropped JPEGs). Runs on a crop of the decoded image without resampling, so
    the grid survives; when the decoder reduced the JPEG (draft mode) the grid period shrinks with it.
    """
    rgb = image.rgb
    h, w = rgb.shape[:2]
    period = 8.0 * max(h, w) / max(max(image.original_size), 1)
    if period < 2.0 or min(h, w) < _MIN_SIDE:
        return None
    y0, x0 = max(0, (h - _BLOCK_CROP) // 2), max(0, (w - _BLOCK_CROP) // 2)
    crop = np.ascontiguousarray(rgb[y0: y0 + _BLOCK_CROP, x0: x0 + _BLOCK_CROP])
    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    horizontal = _seam_strength(np.abs(np.diff(g, axis=1)), period)
    vertical = _seam_strength(np.abs(np.diff(g, axis=0)).T, period)
    return min(horizontal, vertical)


# ----------------------------------------------------------------------------------------------
# Tone and colour statistics
# ----------------------------------------------------------------------------------------------

_MID_GREY = 0.18  # linear reflectance of the photographic mid grey


def _stops_below(linear: float, reference: float) -> float:
    return math.log2(reference / max(linear, 1e-6))


def tone_stats(rgb: np.ndarray) -> dict[str, float]:
    """Exposure and contrast statistics of an sRGB uint8 image (small: global statistics only)."""
    a = rgb.astype(np.float32) / 255.0
    luma = a @ np.array([0.299, 0.587, 0.114], np.float32)
    value = a.max(axis=2)
    v1, v99 = np.percentile(value, [1, 99])
    l2, l98 = np.percentile(luma, [2, 98])
    mean = float(luma.mean())
    return {
        "headroom": _stops_below(float(_srgb_to_linear(v99)), 1.0),
        "mean_stops": _stops_below(float(_srgb_to_linear(mean)), _MID_GREY),
        "floor": float(v1),
        "clip_hi": float((value >= 254 / 255).mean()),
        "clip_lo": float((value <= 2 / 255).mean()),
        "michelson": float((l98 - l2) / max(l98 + l2, 1e-6)),
        "mean": mean,
    }


def gray_edge_cast(rgb: np.ndarray) -> float:
    """Angle in degrees between the illuminant colour and neutral grey.

    The illuminant is estimated with the grey-edge hypothesis (van de Weijer et al. 2007, Minkowski
    norm 6 over linear-light gradients): edges average to grey in most scenes even when surfaces are
    strongly coloured, so a coloured subject reads as a much smaller cast than under grey-world.
    """
    lin = _srgb_to_linear(rgb.astype(np.float32) / 255.0).astype(np.float32)
    lin = cv2.GaussianBlur(lin, (0, 0), 1.0)
    gx = cv2.Sobel(lin, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(lin, cv2.CV_32F, 0, 1)
    mag = np.sqrt(gx * gx + gy * gy).reshape(-1, 3).astype(np.float64)
    illum = np.power(np.mean(mag ** 6, axis=0), 1 / 6)
    norm = float(np.linalg.norm(illum))
    if norm <= 1e-9:
        return 0.0
    cos = float(illum.sum() / (norm * math.sqrt(3)))
    return math.degrees(math.acos(min(max(cos, -1.0), 1.0)))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness: about 0 grey, 33 moderately, 59 quite, 82+ highly."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


# ----------------------------------------------------------------------------------------------
# Scorers
# ----------------------------------------------------------------------------------------------


class _ClassicScorer(Scorer):
    """Per-image scorers: subclasses implement `score_one`."""

    version = "1"

    def score_batch(self, images: Sequence[DecodedImage]) -> list[Result]:
        return [self.score_one(im) for im in images]

    def score_one(self, image: DecodedImage) -> Result:
        raise NotImplementedError

    @staticmethod
    def too_small(image: DecodedImage) -> bool:
        return min(image.rgb.shape[:2]) < _MIN_SIDE


_SHARP_WIDTH = 1.5  # blur sigma (px) at which sharpness is 0.5


@register
class SharpnessScorer(_ClassicScorer):
    name = "sharpness"
    description = "Edge sharpness from the re-blur gradient ratio, corrected for noise."
    input_size = ANALYSIS_SIDE
    metrics = (
        Metric("sharpness", 0.0, 1.0, True,
               "1 / (1 + (w / 1.5 px)^2) for the blur w of the strongest edges in their blurriest "
               "orientation at <= 1024 px; ~0.8+ crisp, 0.5 soft, < 0.2 very blurred. Noise does not "
               "raise it; an image without edges scores 0.", 1.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        if self.too_small(image):
            return {"sharpness": None}
        width = edge_width(_gray(image, ANALYSIS_SIDE), _noise(image) or 0.0)
        if width is None:
            return {"sharpness": 0.0}
        return {"sharpness": _finite(1.0 / (1.0 + (width / _SHARP_WIDTH) ** 2), 0.0, 1.0)}


_NOISE_MAX = 30.0


@register
class NoiseScorer(_ClassicScorer):
    name = "noise"
    description = "White-noise level, separated from fine texture across scales."
    input_size = ANALYSIS_SIDE
    metrics = (
        Metric("noise_sigma", 0.0, _NOISE_MAX, False,
               "Standard deviation of random noise in 8-bit luma levels at <= 1024 px (capped at 30); "
               "< 1 clean, 3 visible in flat areas, 10+ heavy.", 1.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        if self.too_small(image):
            return {"noise_sigma": None}
        sigma = _noise(image)
        return {"noise_sigma": None if sigma is None else _finite(sigma, 0.0, _NOISE_MAX)}


@register
class CompressionScorer(_ClassicScorer):
    name = "compression"
    description = "JPEG block artefacts measured from pixels."
    input_size = ANALYSIS_SIDE
    metrics = (
        Metric("jpeg_blockiness", 0.0, 1.0, False,
               "Share of small luma steps that fall on an 8x8 block grid (in both directions); "
               "~0.01 for uncompressed or high-quality images, 0.1+ visibly blocky.", 1.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        value = jpeg_blockiness(image)
        return {"jpeg_blockiness": None if value is None else _finite(value, 0.0, 1.0)}


_UNDER_STOPS = 4.0  # stops of underexposure that score 1
_OVER_STOPS = 2.5


@register
class ExposureScorer(_ClassicScorer):
    name = "exposure"
    description = "Under- and overexposure in stops, and clipped shadows and highlights."
    input_size = STATS_SIDE
    metrics = (
        Metric("underexposure", 0.0, 1.0, False,
               "How many stops both the highlights (99th percentile) sit below white and the mean sits "
               "below mid grey, / 4: a dark scene with bright highlights is not underexposed.", 1.0),
        Metric("overexposure", 0.0, 1.0, False,
               "Stops the mean sits above mid grey (beyond 0.5) / 2.5, combined with the share of "
               "clipped highlights.", 1.0),
        Metric("highlight_clipping", 0.0, 1.0, False, "Share of pixels with a channel at 254-255.", 0.0),
        Metric("shadow_clipping", 0.0, 1.0, False, "Share of pixels with every channel at 0-2.", 0.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        s = tone_stats(image.at(STATS_SIDE))
        under = min(s["headroom"], s["mean_stops"]) / _UNDER_STOPS
        bright = (-s["mean_stops"] - 0.5) / _OVER_STOPS
        clipped = math.sqrt(s["clip_hi"])
        over = 1.0 - (1.0 - _finite(bright, 0.0, 1.0)) * (1.0 - clipped)
        return {
            "underexposure": _finite(under, 0.0, 1.0),
            "overexposure": _finite(over, 0.0, 1.0),
            "highlight_clipping": _finite(s["clip_hi"], 0.0, 1.0),
            "shadow_clipping": _finite(s["clip_lo"], 0.0, 1.0),
        }


@register
class ContrastScorer(_ClassicScorer):
    name = "contrast"
    description = "Global tonal contrast, independent of exposure."
    input_size = STATS_SIDE
    metrics = (
        Metric("contrast", 0.0, 1.0, True,
               "Michelson contrast (p98 - p2) / (p98 + p2) of luma: ~0.9+ for photos with deep shadows "
               "and bright highlights, < 0.4 washed out.", 1.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        return {"contrast": _finite(tone_stats(image.at(STATS_SIDE))["michelson"], 0.0, 1.0)}


_MAX_CAST = 55.0  # the angle between any non-negative colour and grey is at most 54.7 degrees


@register
class ColorScorer(_ClassicScorer):
    name = "color"
    description = "Colour cast (grey-edge illuminant estimate) and colourfulness."
    input_size = STATS_SIDE
    metrics = (
        Metric("color_cast", 0.0, _MAX_CAST, False,
               "Angle in degrees between the estimated illuminant and neutral grey; < 5 neutral, "
               "15+ strongly tinted (or a scene dominated by one colour).", 1.0),
        Metric("colorfulness", 0.0, None, True,
               "Hasler-Süsstrunk colourfulness: 0 grey, ~33 moderate, ~59 quite, 82+ highly colourful.",
               0.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        rgb = image.at(STATS_SIDE)
        return {
            "color_cast": _finite(gray_edge_cast(rgb), 0.0, _MAX_CAST),
            "colorfulness": _finite(colorfulness(rgb), 0.0, 1e6),
        }


_TARGET_SIDE = 1024.0


@register
class ResolutionScorer(_ClassicScorer):
    name = "resolution"
    description = "Pixel count and shape of the original image."
    input_size = 32  # reads only the original size
    metrics = (
        Metric("resolution", 0.0, 1.0, True,
               "sqrt(width * height) / 1024, capped at 1: 1 for images that fill a 1024 px training "
               "bucket.", 0.5),
        Metric("megapixels", 0.0, None, True, "Width * height / 1e6 of the original image.", 0.0),
        Metric("aspect_ratio", 0.0, None, True, "Width / height of the original image.", 0.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        w, h = image.original_size
        pixels = max(w, 0) * max(h, 0)
        return {
            "resolution": _finite(math.sqrt(pixels) / _TARGET_SIDE, 0.0, 1.0),
            "megapixels": pixels / 1e6,
            "aspect_ratio": w / h if h > 0 else None,
        }
