"""BRISQUE: both LIVE models on OpenCV's features, their agreement, and the offline route on CI.

The OpenCV route needs opencv_contrib's LIVE yml files: the real ones are used when ../shared/weights
exists (placed in a temp cache, fetched through the weights helper), otherwise those tests skip. The
libsvm route uses the model shipped in the PyPI `brisque` package and always runs.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from curator import degrade
from curator.decode import decode, read_file
from curator.job import ScoringJob
from scorers.base import DecodedImage, WeightsUnavailable
from scorers.brisque import (
    BRISQUE_MODEL_LIVE,
    BRISQUE_RANGE_LIVE,
    BrisqueScorer,
    LibsvmModel,
    OpenCvModel,
    brisque_features,
    libsvm_model_files,
    scale_features,
)
from scorers.weights import cached_path
from storage.db import connect
from tests.images import photo, save
from tests.weight_files import SHARED_WEIGHTS

needs_real_files = pytest.mark.skipif(not SHARED_WEIGHTS.is_dir(), reason="OpenCV LIVE model files not available")
NATURAL = ("astronaut", "chelsea", "coffee", "rocket", "camera", "moon", "brick", "text")


def natural(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)


def decoded(rgb: np.ndarray, name: str = "im") -> DecodedImage:
    return DecodedImage(path=name, rgb=rgb, original_size=(rgb.shape[1], rgb.shape[0]))


@pytest.fixture
def opencv_cache(tmp_path: Path) -> Path:
    """A weights cache holding the real LIVE files, as `curator weights --prefetch` leaves it."""
    for spec in (BRISQUE_MODEL_LIVE, BRISQUE_RANGE_LIVE):
        target = cached_path(spec, tmp_path)
        target.parent.mkdir(parents=True)
        shutil.copyfile(SHARED_WEIGHTS / spec.filename, target)
    return tmp_path


def ladder() -> list[np.ndarray]:
    """Natural images and blurred / noisy versions of them: a spread of BRISQUE scores."""
    out = []
    for name in NATURAL:
        rgb = natural(name)
        out.append(rgb)
        out += [degrade.gaussian_blur(rgb, 0.8 * level) for level in (1, 3)]
        out += [degrade.gaussian_noise(rgb, 8.0 * level) for level in (1, 3)]
    return out


def test_libsvm_route_runs_offline_and_is_declared_in_the_version(tmp_path: Path) -> None:
    scorer = BrisqueScorer(device="cpu", cache_dir=tmp_path)  # empty cache, HF_HUB_OFFLINE=1
    assert scorer.availability().ok
    assert scorer.route() == "libsvm"
    scorer.load()
    assert scorer.run_version().startswith("1+libsvm.")
    out = scorer.score_batch([decoded(natural("astronaut")), decoded(degrade.gaussian_blur(natural("astronaut"), 3))])
    assert 0.0 <= out[0]["brisque"] < out[1]["brisque"] <= 100.0


def test_libsvm_model_equals_libsvm_itself() -> None:
    """Our numpy evaluation of the package's svm.txt gives what libsvm gives on the same features."""
    svmutil = pytest.importorskip("libsvm.svmutil")
    svm_path, ranges_path = libsvm_model_files()
    ours = LibsvmModel(svm_path, ranges_path)
    reference = svmutil.svm_load_model(str(svm_path))
    for rgb in ladder()[:15]:
        features = brisque_features(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        scaled = [float(v) for v in scale_features(features, ours.low, ours.high)]
        nodes, _ = svmutil.gen_svm_nodearray(scaled)
        assert ours.predict(features) == pytest.approx(svmutil.libsvm.svm_predict(reference, nodes), abs=1e-8)


@needs_real_files
def test_opencv_route_is_exactly_cv2_quality_brisque(opencv_cache: Path) -> None:
    model = OpenCvModel(cached_path(BRISQUE_MODEL_LIVE, opencv_cache), cached_path(BRISQUE_RANGE_LIVE, opencv_cache))
    quality = cv2.quality.QualityBRISQUE_create(str(cached_path(BRISQUE_MODEL_LIVE, opencv_cache)),
                                                str(cached_path(BRISQUE_RANGE_LIVE, opencv_cache)))
    for rgb in ladder():
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        ours = float(np.clip(model.predict(brisque_features(gray)), 0, 100))
        assert ours == pytest.approx(quality.compute(gray)[0], abs=1e-4)
        # a colour image gives OpenCV's own colour handling (BGR -> gray) the same answer
        assert quality.compute(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[0] == pytest.approx(ours, abs=1e-4)


@needs_real_files
def test_both_routes_agree_on_the_same_images(opencv_cache: Path) -> None:
    """Different LIVE trainings, same features: close scores and nearly the same order."""
    from scipy.stats import spearmanr

    opencv = BrisqueScorer(device="cpu", cache_dir=opencv_cache, options={"brisque_model": "opencv"})
    libsvm = BrisqueScorer(device="cpu", cache_dir=opencv_cache, options={"brisque_model": "libsvm"})
    images = [decoded(rgb) for rgb in ladder()]
    a = np.array([o["brisque"] for o in opencv.score_batch(images)])
    b = np.array([o["brisque"] for o in libsvm.score_batch(images)])
    assert opencv.run_version() == "1+opencv-live" and libsvm.run_version().startswith("1+libsvm.")
    assert np.abs(a - b).mean() < 3.0 and np.abs(a - b).max() < 8.0
    assert spearmanr(a, b)[0] > 0.98
    assert a.max() - a.min() > 40  # the ladder spans a real range, so agreement means something


@needs_real_files
def test_auto_prefers_opencv_when_its_files_are_cached(opencv_cache: Path) -> None:
    scorer = BrisqueScorer(device="cpu", cache_dir=opencv_cache)
    assert scorer.route() == "opencv"
    scorer.load()
    assert scorer.run_version() == "1+opencv-live"


def test_auto_falls_back_to_libsvm_when_the_download_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    scorer = BrisqueScorer(device="cpu", cache_dir=tmp_path)
    assert scorer.route() == "opencv"  # online and not cached: it would download
    monkeypatch.setattr("scorers.brisque.fetch", _fail_fetch)
    scorer.load()
    assert scorer.route() == "libsvm" and scorer.run_version().startswith("1+libsvm.")
    forced = BrisqueScorer(device="cpu", cache_dir=tmp_path, options={"brisque_model": "opencv"})
    with pytest.raises(WeightsUnavailable, match="simulated"):
        forced.load()


def _fail_fetch(*args: object, **kwargs: object) -> Path:
    raise WeightsUnavailable("weights opencv-brisque-model-live: download failed (simulated)")


def test_forcing_opencv_offline_without_files_is_unavailable(tmp_path: Path) -> None:
    scorer = BrisqueScorer(device="cpu", cache_dir=tmp_path, options={"brisque_model": "opencv"})
    status = scorer.availability()
    assert not status.ok and "not in cache and HF_HUB_OFFLINE=1" in status.reason
    with pytest.raises(WeightsUnavailable):
        scorer.load()
    with pytest.raises(ValueError, match="brisque_model"):
        BrisqueScorer(options={"brisque_model": "matlab"}).route()


def test_flat_and_tiny_images_get_null() -> None:
    scorer = BrisqueScorer(device="cpu", options={"brisque_model": "libsvm"})
    odd = [np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8), photo(1, (1, 1)),
           photo(2, (300, 3)), photo(3, (2, 2))]
    assert [o["brisque"] for o in scorer.score_batch([decoded(x) for x in odd])] == [None] * 5


def test_large_images_are_scored_at_1024(tmp_path: Path) -> None:
    scorer = BrisqueScorer(device="cpu", options={"brisque_model": "libsvm"})
    big = cv2.resize(natural("astronaut"), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    image = decoded(big)
    direct = scorer.score_batch([image])[0]["brisque"]
    reduced = scorer.score_batch([decoded(image.at(1024))])[0]["brisque"]
    assert direct == pytest.approx(reduced)


def test_engine_scores_brisque_on_its_decode_threads(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i, name in enumerate(NATURAL[:4]):
        save(natural(name), root / f"{i}_{name}.png")
    save(np.zeros((64, 64, 3), np.uint8), root / "flat.png")
    scorer = BrisqueScorer(device="cpu", options={"brisque_model": "libsvm"})
    con = connect(tmp_path / "db.duckdb")
    assert ScoringJob(con, root, [scorer], batch_size=2, workers=2).run().state == "done"
    stored = dict(con.execute("SELECT path, brisque FROM image_scores").fetchall())
    con.close()
    assert stored.pop("flat.png") is None
    for rel, value in stored.items():
        image = decode(read_file(root / rel).data, rel, BrisqueScorer.input_size)
        assert value == pytest.approx(scorer.score_batch([image])[0]["brisque"], abs=1e-9)
