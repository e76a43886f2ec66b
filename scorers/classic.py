"""Classic (weight-free) quality scorers: sharpness, noise, JPEG blocking, exposure, contrast, colour,
resolution.

Pixel-level defects are measured with the longer side reduced to at most `ANALYSIS_SIDE` (smaller
images as they are), global tone and colour statistics at `STATS_SIDE`: a 6000 px photo is judged by
what a trainer working at about 1024 px would see, not by its pixel-level softness.

The metrics that drive the default ensemble have closed ranges on which a clean photo sits at the
good end, and each is built to stay flat under the other defects: sharpness is corrected for the
measured noise, noise is separated from fine texture across scales, contrast is exposure-invariant,
and the two-sided exposure scores leave naturally dark or bright scenes alone. Raw, informational
quantities (colourfulness, clipping fractions, megapixels, aspect ratio) have weight 0.
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


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _finite(x: float, lo: float, hi: float) -> float:
    """Clamp to [lo, hi], mapping NaN to lo, so no metric ever leaves its declared range."""
    return float(min(max(x, lo), hi)) if math.isfinite(x) else lo


# ----------------------------------------------------------------------------------------------
# Shared analysis images
# ----------------------------------------------------------------------------------------------
# Full-resolution float arrays are what costs time here (allocation and page faults more than
# arithmetic), so the pixel-level measurements share one pyramid, work at half size where they can,
# and evaluate full-resolution quantities only at the few pixels that need them.


def _pyramid(image: DecodedImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 luma at <= ANALYSIS_SIDE, and float32 copies at 1/2 and 1/4 of it (2x2 block means).

    The full image is cropped to a multiple of 4 pixels so that every level tiles exactly.
    """
    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g = image.gray_at(ANALYSIS_SIDE)
        h, w = g.shape[0] // 4 * 4, g.shape[1] // 4 * 4
        g = g[:h, :w]
        half = cv2.resize(g.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        quarter = cv2.resize(half, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        return g, half, quarter
    return _cached(image, "pyramid", build)  # type: ignore[return-value]


def _block_means(a: np.ndarray, b: int) -> np.ndarray:
    """Means of the b x b tiles of `a` (whose sides are multiples of b)."""
    return cv2.resize(a, (a.shape[1] // b, a.shape[0] // b), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------

# Immerkær's operator, the outer product of [1, -2, 1]: its response to white noise has variance
# 36 sigma^2 and it ignores planes and most natural structure.
_LAPLACE_1D = np.array([1, -2, 1], np.float32)
_NOISE_BLOCK = 32


def _highpass_energy(g: np.ndarray, b: int) -> np.ndarray:
    """Per b x b block, the mean squared Immerkær response / 36: the noise variance for white noise."""
    r = cv2.sepFilter2D(g, cv2.CV_32F, _LAPLACE_1D, _LAPLACE_1D, borderType=cv2.BORDER_REFLECT)
    cv2.multiply(r, r, dst=r)
    return _block_means(r, b) / 36.0


def noise_sigma(g: np.ndarray, half: np.ndarray, quarter: np.ndarray) -> float | None:
    """Standard deviation of white noise in luma levels, separated from texture across three scales.

    Per block, the high-pass energy at scales 1, 1/2 and 1/4 is e_k = n^2 / 4^k + T * beta^k: white
    noise loses 3/4 of its energy per halving while texture follows a power law. Three equations give
    n^2 in closed form, so fine texture (grass, gravel) is not read as noise and blur, which removes
    texture, does not read as denoising. Blocks with more than a couple of clipped pixels are skipped
    (clipping hides noise) unless too few remain. The median block is returned; None if the image is too small.
    """
    b = _NOISE_BLOCK
    while b > 8 and min(g.shape) < 4 * b:
        b //= 2
    h, w = g.shape[0] // b * b, g.shape[1] // b * b
    if min(h, w) < 2 * b:
        return None
    e1 = _highpass_energy(g[:h, :w], b)
    e2 = _highpass_energy(half[: h // 2, : w // 2], b // 2)
    e3 = _highpass_energy(quarter[: h // 4, : w // 4], b // 4)
    clipped = _block_means(cv2.inRange(g[:h, :w], 3, 252), b) < 255
    if (~clipped).sum() >= 4:
        e1, e2, e3 = e1[~clipped], e2[~clipped], e3[~clipped]
    den = e3 + e1 / 16 - e2 / 2
    n2 = (e1 * e3 - e2 * e2) / np.where(np.abs(den) < 1e-6, 1e-6, den)
    return float(np.sqrt(np.median(np.clip(n2, 0.0, e1))))


def _noise(image: DecodedImage) -> float | None:
    return _cached(image, "noise", lambda: noise_sigma(*_pyramid(image)))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Sharpness
# ----------------------------------------------------------------------------------------------

_ORIENTATIONS = 6
_TOP_EDGES = 0.1
_EDGE_SNR = 4.0
_MIN_EDGES = 10
# r^2 = (w^2 + A) / (w^2 + B) for a step blurred by a Gaussian of sigma w, fitted on synthetic edges
# at every orientation and sub-pixel offset (tests/test_classic_scorers.py checks the inversion).
_FINE_VAR, _COARSE_VAR = 0.688, 5.536


def _coarse_gradients(half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives (per full-resolution pixel) of the half-size image blurred by 1 pixel."""
    b = cv2.GaussianBlur(half, (5, 5), 1.0, borderType=cv2.BORDER_REFLECT)
    return (cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 16, borderType=cv2.BORDER_REFLECT),
            cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 16, borderType=cv2.BORDER_REFLECT))


def _fine_energy(g: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Mean of squared Sobel gradients (per pixel) over the 2x2 full-size pixels under each
    half-size pixel (ys, xs), computed from 4x4 neighbourhoods only."""
    h, w = g.shape
    offsets = np.arange(-1, 3)
    rows = np.clip(2 * ys[:, None] + offsets, 0, h - 1)
    cols = np.clip(2 * xs[:, None] + offsets, 0, w - 1)
    p = g[rows[:, :, None], cols[:, None, :]].astype(np.float32)
    dx = p[:, :, 2:] - p[:, :, :-2]
    dy = p[:, 2:, :] - p[:, :-2, :]
    gx = (dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]) / 8
    gy = (dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]) / 8
    return (gx * gx + gy * gy).mean(axis=(1, 2))


def _noise_gains() -> tuple[float, float]:
    """Variance of one gradient component per unit of white-noise variance, fine and coarse."""
    fine = (1 + 4 + 1) * (1 + 1) / 64.0  # the Sobel kernel / 8
    impulse = np.zeros((33, 33), np.float32)
    impulse[16, 16] = 1.0
    coarse = float(np.square(_coarse_gradients(impulse)[0]).sum()) / 4.0  # 2x2 means: variance / 4
    return fine, coarse


_FINE_GAIN, _COARSE_GAIN = _noise_gains()


def edge_width(g: np.ndarray, half: np.ndarray, sigma_n: float) -> float | None:
    """Blur of the strongest edges as a Gaussian sigma in pixels, from the re-blur gradient ratio.

    A step blurred by w has squared gradient peaks in ratio (w^2 + A) / (w^2 + B) at a fine and a
    coarse measurement scale, so their ratio gives w whatever the edge contrast. The expected noise
    energy is subtracted from both, so noise does not make edges look sharper, and only edges well
    above the noise count. Edges are grouped by orientation and the blurriest group is reported,
    which catches motion blur (sharp along the motion, smeared across it). Edges are found at half
    size; the fine energy is the mean over the 2x2 full-size pixels under each. None when there are
    no usable edges.
    """
    gx, gy = _coarse_gradients(half)
    m = cv2.magnitude(gx, gy)
    floor = _EDGE_SNR * math.sqrt(2 * _COARSE_GAIN) * sigma_n + 1.0
    peaks = np.flatnonzero((m >= cv2.dilate(m, None)) & (m > floor))
    if peaks.size < _MIN_EDGES:
        return None
    strength = m.ravel()[peaks]
    angle = np.arctan2(gy.ravel()[peaks], gx.ravel()[peaks]) % np.pi
    groups = np.minimum((angle * (_ORIENTATIONS / np.pi)).astype(np.int64), _ORIENTATIONS - 1)
    chosen = []
    for k in range(_ORIENTATIONS):
        members = np.flatnonzero(groups == k)
        if members.size >= _MIN_EDGES:
            s = strength[members]
            chosen.append(members[s >= np.quantile(s, 1 - _TOP_EDGES)])
    if not chosen:
        return None
    top = np.concatenate(chosen)
    ys, xs = np.divmod(peaks[top], half.shape[1])
    e1 = _fine_energy(g, ys, xs) - 2 * _FINE_GAIN * sigma_n ** 2
    e2 = strength[top] ** 2 - 2 * _COARSE_GAIN * sigma_n ** 2
    widths, start = [], 0
    for members in chosen:
        part = slice(start, start + members.size)
        start += members.size
        r2 = float(np.clip(e2[part].sum() / max(float(e1[part].sum()), 1e-6), 0.0, 0.999))
        widths.append(math.sqrt(max((r2 * _COARSE_VAR - _FINE_VAR) / (1 - r2), 0.0)))
    return max(widths)


# ----------------------------------------------------------------------------------------------
# JPEG blocking
# ----------------------------------------------------------------------------------------------

_BLOCK_CROP = 1024
_SEAM_WINDOW = 17  # pixels of neighbourhood a step is compared with


def _seam_strength(a: np.ndarray, b: np.ndarray, axis: int, period: float) -> float:
    """Share of the profile of relative |a - b| steps (averaged along `axis`) repeating with `period`.

    Each step is divided by the mean step in its neighbourhood across the seams, so smooth areas
    (where seams show) and textured areas (where they hide) count alike and scene edges do not
    dominate. 0: no grid; 1: all step energy on the grid.
    """
    steps = cv2.absdiff(a, b).astype(np.float32)
    window = (_SEAM_WINDOW, 1) if axis == 0 else (1, _SEAM_WINDOW)
    local = cv2.blur(steps, window, borderType=cv2.BORDER_REFLECT)
    cv2.add(local, 1.0, dst=local)
    cv2.divide(steps, local, dst=local)
    profile = cv2.reduce(local, axis, cv2.REDUCE_AVG).ravel().astype(np.float64)
    total = profile.sum()
    if profile.size < 2 * period or total <= 1e-9:
        return 0.0
    x = np.arange(profile.size)
    return float(abs(np.dot(profile, np.exp(-2j * np.pi * x / period))) / total)


def jpeg_blockiness(image: DecodedImage) -> float | None:
    """Strength of the 8x8 JPEG block grid, from pixels alone (works on JPEGs re-saved as PNG).

    Block seams are small luma steps every 8 pixels in both directions. The step profile along each
    axis is tested at the grid frequency with a Fourier coefficient, so the grid is found whatever
    its phase (cropped JPEGs); the weaker direction is reported, so a 1-D periodic texture does not
    count. Runs on the decoded image without resampling (a central crop of large ones), so the grid
    survives; when the decoder reduced the JPEG (draft mode) the grid period shrinks with it. None if
    blocks would be under 2 pixels.
    """
    h, w = image.rgb.shape[:2]
    period = 8.0 * max(h, w) / max(max(image.original_size), 1)
    if period < 2.0 or min(h, w) < _MIN_SIDE:
        return None
    if max(h, w) <= ANALYSIS_SIDE:
        g = image.gray_at(ANALYSIS_SIDE)
    else:
        y0, x0 = max(0, (h - _BLOCK_CROP) // 2), max(0, (w - _BLOCK_CROP) // 2)
        crop = image.rgb[y0: y0 + _BLOCK_CROP, x0: x0 + _BLOCK_CROP]
        g = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    stride = max(1, min(g.shape) // 256)  # a few hundred lines are plenty
    horizontal = _seam_strength(g[::stride, 1:], g[::stride, :-1], 0, period)
    vertical = _seam_strength(g[1:, ::stride], g[:-1, ::stride], 1, period)
    return min(horizontal, vertical)


# ----------------------------------------------------------------------------------------------
# Tone and colour statistics
# ----------------------------------------------------------------------------------------------

_MID_GREY = 0.18  # linear reflectance of the photographic mid grey
_LINEAR = _srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


def _stops_below(linear: float, reference: float) -> float:
    return math.log2(reference / max(linear, 1e-6))


def _percentile(hist: np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) of 8-bit values from their histogram, as a fraction of 255."""
    cdf = np.cumsum(hist)
    return float(np.searchsorted(cdf, q / 100.0 * cdf[-1])) / 255.0


def tone_stats(rgb: np.ndarray) -> dict[str, float]:
    """Exposure and contrast statistics of a small sRGB uint8 image, from 8-bit histograms.

    `headroom`: stops between white and the brightest content (99.9th percentile of the max channel,
    so a few specular pixels decide it but single hot pixels do not); `mean_stops`: stops the mean
    luma sits below mid grey (negative: above).
    """
    r, g, b = cv2.split(rgb)
    value = cv2.max(cv2.max(r, g), b)
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hv = np.bincount(value.ravel(), minlength=256)
    hl = np.bincount(luma.ravel(), minlength=256)
    n = max(int(hl.sum()), 1)
    l2, l98 = _percentile(hl, 2), _percentile(hl, 98)
    mean = float(np.dot(hl, np.arange(256))) / n / 255.0
    return {
        "headroom": _stops_below(float(_LINEAR[round(_percentile(hv, 99.9) * 255)]), 1.0),
        "mean_stops": _stops_below(float(_srgb_to_linear(np.float64(mean))), _MID_GREY),
        "clip_hi": float(hv[254:].sum()) / n,
        "clip_lo": float(hv[:3].sum()) / n,
        "michelson": (l98 - l2) / max(l98 + l2, 1e-6),
    }


def _tone(image: DecodedImage) -> dict[str, float]:
    return _cached(image, "tone", lambda: tone_stats(image.at(STATS_SIDE)))  # type: ignore[return-value]


def gray_edge_cast(rgb: np.ndarray) -> float:
    """Angle in degrees between the illuminant colour and neutral grey.

    The illuminant is estimated with the grey-edge hypothesis (van de Weijer et al. 2007, Minkowski
    norm 6 over linear-light gradients): edges average to grey in most scenes even when surfaces are
    strongly coloured, so a coloured subject reads as a much smaller cast than under grey-world.
    """
    lin = cv2.GaussianBlur(_LINEAR[rgb], (0, 0), 1.0)
    gx = cv2.Sobel(lin, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(lin, cv2.CV_32F, 0, 1)
    energy = cv2.add(cv2.multiply(gx, gx), cv2.multiply(gy, gy))
    peak = float(energy.max())
    if not peak > 1e-12:
        return 0.0
    cv2.pow(energy / peak, 3, dst=energy)  # |gradient|^6, scaled to avoid float32 overflow
    illum = np.power(np.array(cv2.mean(energy)[:3]), 1 / 6)
    norm = float(np.linalg.norm(illum))
    if not norm > 1e-12:
        return 0.0
    cos = float(illum.sum() / (norm * math.sqrt(3)))
    return math.degrees(math.acos(min(max(cos, -1.0), 1.0)))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness: about 0 grey, 33 moderately, 59 quite, 82+ highly."""
    r, g, b = (c.astype(np.float32) for c in cv2.split(rgb))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


# ----------------------------------------------------------------------------------------------
# Scorers
# ----------------------------------------------------------------------------------------------


class _ClassicScorer(Scorer):
    """Cheap, thread-safe numpy/OpenCV scorers: the engine runs them on its decode threads. Scorers of
    one image share intermediate results through `image.features`. Subclasses implement `score_one`."""

    version = "1"
    per_image = True

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
        g, half, _ = _pyramid(image)
        width = edge_width(g, half, _noise(image) or 0.0)
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
               "~0.01 for uncompressed or high-quality images, 0.1+ visibly blocky. Weighs more than "
               "noise because compression also wipes out grain, which noise_sigma counts as a gain.",
               1.5),
    )

    def score_one(self, image: DecodedImage) -> Result:
        value = jpeg_blockiness(image)
        return {"jpeg_blockiness": None if value is None else _finite(value, 0.0, 1.0)}


# Exposure is two-sided: a photo that is dark or bright by nature must not look better when pushed
# the other way, so the mean-based terms only start beyond what natural scenes span, and the
# overexposure score also counts clipped highlights, which only ever grow with exposure.
_UNDER_FROM, _UNDER_SPAN = 0.25, 3.5  # stops
_BRIGHT_FROM, _BRIGHT_SPAN = 1.5, 2.5  # stops above mid grey


@register
class ExposureScorer(_ClassicScorer):
    name = "exposure"
    description = "Under- and overexposure in stops, and clipped shadows and highlights."
    input_size = STATS_SIDE
    metrics = (
        Metric("underexposure", 0.0, 1.0, False,
               "Stops by which both the brightest content (99.9th percentile) sits below white and "
               "the mean sits below mid grey, beyond 0.25, / 3.5: a dark scene with bright highlights "
               "is not underexposed. 0 fine, 0.2 about one stop under, 1 from 3.75 stops.", 1.0),
        Metric("overexposure", 0.0, 1.0, False,
               "1 - (1 - b)(1 - sqrt(c)): b = stops the mean sits above mid grey beyond 1.5, / 2.5; "
               "c = share of clipped highlights. 0 fine, 0.3 about 10% clipped.", 1.0),
        Metric("highlight_clipping", 0.0, 1.0, False, "Share of pixels with a channel at 254-255.", 0.0),
        Metric("shadow_clipping", 0.0, 1.0, False, "Share of pixels with every channel at 0-2.", 0.0),
    )

    def score_one(self, image: DecodedImage) -> Result:
        s = _tone(image)
        under = (min(s["headroom"], s["mean_stops"]) - _UNDER_FROM) / _UNDER_SPAN
        bright = (-s["mean_stops"] - _BRIGHT_FROM) / _BRIGHT_SPAN
        over = 1.0 - (1.0 - _finite(bright, 0.0, 1.0)) * (1.0 - math.sqrt(s["clip_hi"]))
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
        return {"contrast": _finite(_tone(image)["michelson"], 0.0, 1.0)}


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
