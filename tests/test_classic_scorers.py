"""Classic scorers on real photos (skimage.data) degraded with curator.degrade.

Each metric must respond monotonically to its own defect and stay nearly flat under others; the
inputs that break naive implementations (tiny, flat, grey, JPEG grids off the origin, draft-decoded
JPEGs) must give sensible values. The generic contract (declared keys, ranges, every input mode) is
tested for all scorers in test_scorer_contract.py.
"""
from __future__ import annotations

import io
import math
from functools import cache

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from curator import degrade
from curator.decode import decode
from scorers import classic
from scorers.base import DecodedImage

SCORERS = [classic.SharpnessScorer(), classic.NoiseScorer(), classic.CompressionScorer(),
           classic.ExposureScorer(), classic.ContrastScorer(), classic.ColorScorer(), classic.ResolutionScorer()]


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3])


@cache
def photo(name: str) -> np.ndarray:
    return _rgb(getattr(data, name)())


PHOTOS = ("astronaut", "camera", "coffee", "grass")


def image(rgb: np.ndarray, original_size: tuple[int, int] | None = None) -> DecodedImage:
    return DecodedImage(path="t", rgb=rgb, original_size=original_size or (rgb.shape[1], rgb.shape[0]))


def score(rgb: np.ndarray) -> dict[str, float | None]:
    im = image(rgb)
    out: dict[str, float | None] = {}
    for s in SCORERS:
        out.update(s.score_batch([im])[0])
    return out


def ladder(name: str, defect: str, levels: tuple[int, ...] = (1, 3, 5)) -> list[dict[str, float | None]]:
    """Scores of the clean photo, then of `defect` at `levels`."""
    clean = photo(name)
    return [score(clean)] + [score(degrade.LADDER[defect](clean, k)) for k in levels]


def values(rows: list[dict[str, float | None]], metric: str) -> list[float]:
    return [float(r[metric]) for r in rows]  # type: ignore[arg-type]


def strictly_decreasing(v: list[float]) -> bool:
    return all(a > b for a, b in zip(v, v[1:]))


def strictly_increasing(v: list[float]) -> bool:
    return all(a < b for a, b in zip(v, v[1:]))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("defect", ["gaussian_blur", "motion_blur", "down_up"])
def test_sharpness_falls_with_blur(name: str, defect: str) -> None:
    assert strictly_decreasing(values(ladder(name, defect), "sharpness"))


@pytest.mark.parametrize("name", PHOTOS)
def test_noise_does_not_raise_sharpness(name: str) -> None:
    clean, *noisy = values(ladder(name, "noise", (1, 2, 3, 4, 5)), "sharpness")
    assert max(noisy) <= clean + 0.04  # estimator jitter only; Laplacian variance would double
    assert np.mean(noisy) <= clean + 0.02


def test_sharpness_inverts_a_known_blur() -> None:
    """A straight step blurred by a Gaussian of sigma s measures about s pixels wide, at any angle."""
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    for angle in (0.0, 0.4, 1.1):
        d = (xx - 128) * math.cos(angle) + (yy - 128) * math.sin(angle)
        step = np.where(d > 0, 200, 50).astype(np.float32)
        for s in (1.0, 2.0, 3.0):
            g = np.clip(cv2.GaussianBlur(step, (0, 0), s) + 0.5, 0, 255).astype(np.uint8)
            full, half, _ = classic._pyramid(image(_rgb(g)))
            width = classic.edge_width(full, half, 0.0)
            assert width == pytest.approx(s, rel=0.25), (angle, s, width)


@pytest.mark.parametrize("name", PHOTOS)
def test_noise_sigma_rises_with_noise(name: str) -> None:
    assert strictly_increasing(values(ladder(name, "noise", (1, 2, 3, 4, 5)), "noise_sigma"))


def test_noise_sigma_measures_white_noise() -> None:
    """On a smooth gradient, the estimate is the luma noise actually added (within 15%)."""
    ramp = np.tile(np.linspace(60, 190, 512, dtype=np.float32), (384, 1))
    for sigma in (2.0, 6.0, 15.0):
        noisy = ramp + np.random.default_rng(1).normal(0, sigma, ramp.shape).astype(np.float32)
        g = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        assert score(_rgb(g))["noise_sigma"] == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize("defect", ["gaussian_blur", "jpeg", "down_up"])
def test_fine_texture_and_blur_do_not_read_as_noise(defect: str) -> None:
    """Grass is pure fine texture: not noise, and blurring it away is not denoising."""
    for v in values(ladder("grass", defect), "noise_sigma"):
        assert v < 1.0


@pytest.mark.parametrize("name", PHOTOS)
def test_blockiness_rises_as_jpeg_quality_falls(name: str) -> None:
    v = values(ladder(name, "jpeg"), "jpeg_blockiness")
    assert strictly_increasing(v)
    assert v[0] < 0.02


@pytest.mark.parametrize("defect", ["noise", "gaussian_blur", "down_up", "low_contrast"])
def test_blockiness_stays_low_without_jpeg(defect: str) -> None:
    for v in values(ladder("astronaut", defect), "jpeg_blockiness"):
        assert v < 0.02


def test_blockiness_finds_a_shifted_grid() -> None:
    """A JPEG cropped after compression has its block grid off the origin."""
    compressed = degrade.jpeg(photo("coffee"), 30)
    for dy, dx in ((0, 0), (3, 5), (7, 1)):
        assert score(compressed[dy:, dx:])["jpeg_blockiness"] > 0.05


def test_blockiness_after_draft_decoding() -> None:
    """A large JPEG decoded with draft() at 1/2 size has 4-pixel blocks; the scorer expects them."""
    big = cv2.resize(photo("astronaut"), (2400, 2400), interpolation=cv2.INTER_CUBIC)
    found = {}
    for quality in (95, 20):
        buf = io.BytesIO()
        Image.fromarray(big).save(buf, "JPEG", quality=quality)
        decoded = decode(buf.getvalue(), "big.jpg", 1024)
        assert decoded.rgb.shape[0] < 2400  # the decoder did reduce it
        found[quality] = classic.CompressionScorer().score_batch([decoded])[0]["jpeg_blockiness"]
    assert found[95] < 0.02 < 0.04 < found[20]


@pytest.mark.parametrize("name", PHOTOS)
def test_exposure_scores_track_their_direction_only(name: str) -> None:
    under = ladder(name, "underexposure", (1, 2, 3, 4, 5))
    over = ladder(name, "overexposure", (1, 2, 3, 4, 5))
    assert values(under, "underexposure")[-1] > 0.5 and values(over, "overexposure")[-1] > 0.5
    assert all(b >= a for a, b in zip(values(under, "underexposure"), values(under, "underexposure")[1:]))
    assert all(b >= a for a, b in zip(values(over, "overexposure"), values(over, "overexposure")[1:]))
    assert max(values(over, "underexposure")) == 0.0
    assert max(values(under, "overexposure")) <= values(under, "overexposure")[0]


def test_dark_scene_with_highlights_is_not_underexposed() -> None:
    """A night sky is dark on average but its stars reach white."""
    assert score(_rgb(data.hubble_deep_field()))["underexposure"] < 0.05


@pytest.mark.parametrize("name", PHOTOS)
def test_contrast_falls_with_low_contrast_only(name: str) -> None:
    assert strictly_decreasing(values(ladder(name, "low_contrast"), "contrast"))
    clean = score(photo(name))["contrast"]
    for defect in ("underexposure", "jpeg", "color_cast"):
        for v in values(ladder(name, defect, (1, 3)), "contrast")[1:]:
            assert abs(v - clean) < 0.12, defect


@pytest.mark.parametrize("name", PHOTOS)
def test_color_cast_rises_with_cast(name: str) -> None:
    assert strictly_increasing(values(ladder(name, "color_cast"), "color_cast"))
    for v in values(ladder(name, "noise", (1, 3)), "color_cast"):
        assert v < 8.0


def test_grey_images_have_no_cast_or_colour() -> None:
    s = score(photo("camera"))
    assert s["color_cast"] == 0.0 and s["colorfulness"] == pytest.approx(0.0, abs=1e-6)
    assert score(photo("astronaut"))["colorfulness"] > 30


@pytest.mark.parametrize("shape", [(1, 1), (8, 8), (15, 200)])
def test_tiny_images_are_not_measured(shape: tuple[int, int]) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    s = score(rgb)
    for m in ("sharpness", "noise_sigma", "jpeg_blockiness"):
        assert s[m] is None
    assert s["resolution"] == pytest.approx(math.sqrt(shape[0] * shape[1]) / 1024)


@pytest.mark.parametrize("level", [0, 1, 128, 255])
def test_flat_images(level: int) -> None:
    s = score(np.full((96, 128, 3), level, np.uint8))
    assert s["sharpness"] == 0.0 and s["noise_sigma"] == 0.0 and s["jpeg_blockiness"] == 0.0
    assert s["color_cast"] == 0.0 and s["contrast"] == 0.0
    assert all(v is None or math.isfinite(v) for v in s.values())
    assert (s["underexposure"] == 1.0) == (level <= 1)
    assert (s["overexposure"] == 1.0) == (level == 255)


def test_resolution_and_shape_come_from_the_original_size() -> None:
    s = classic.ResolutionScorer().score_batch([image(photo("camera")[:64, :64], (4000, 2000))])[0]
    assert s == {"resolution": 1.0, "megapixels": 8.0, "aspect_ratio": 2.0}


def test_scorers_share_work_through_features() -> None:
    im = image(photo("astronaut"))
    classic.SharpnessScorer().score_batch([im])
    assert "classic.noise" in im.features and "classic.pyramid" in im.features
