"""Face and identity scorers, run through insightface's real model zoo on test-made ONNX models.

buffalo_l itself cannot exist here. `tests/face_models.py` builds ONNX files with buffalo_l's
interfaces and member names, zipped like buffalo_l.zip and fetched by file:// URL through the weights
helper; insightface routes them to its own SCRFD, ArcFaceONNX and Landmark classes and runs its own
decoding, NMS, alignment and pose estimation. What they detect is defined by pixel rules (see that
module), so each expected value below follows from the image a test draws.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from curator.job import ScoringJob
from scorers import base as scorers_base
from scorers.base import DecodedImage, WeightsUnavailable
from scorers.face import (
    _ANALYZERS,
    BUFFALO_L,
    GOOD_FACE_SIDE,
    SHARPNESS_HALF,
    Face,
    FaceScorer,
    IdentityScorer,
    ImageFaces,
    face_metrics,
)
from scorers.weights import WeightSpec
from storage.db import connect
from tests.face_models import buffalo_like_zip, face_image
from tests.images import save
from tests.weight_files import file_spec

YAW, PITCH = 20.0, -10.0


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> WeightSpec:
    folder = tmp_path_factory.mktemp("pack")
    return file_spec(buffalo_like_zip(folder / "buffalo_test.zip", yaw=YAW, pitch=PITCH), "test-buffalo",
                     archive_members=BUFFALO_L.archive_members)


def classes(pack: WeightSpec) -> tuple[type[FaceScorer], type[IdentityScorer]]:
    class TestPackFace(FaceScorer):
        face_pack: ClassVar[WeightSpec] = pack

    class TestPackIdentity(IdentityScorer):
        face_pack: ClassVar[WeightSpec] = pack

    return TestPackFace, TestPackIdentity


def decoded(rgb: np.ndarray, name: str = "im", original: tuple[int, int] | None = None) -> DecodedImage:
    return DecodedImage(path=name, rgb=rgb, original_size=original or (rgb.shape[1], rgb.shape[0]))


@pytest.fixture
def face(pack: WeightSpec, tmp_path: Path):
    scorer = classes(pack)[0](device="cpu", cache_dir=tmp_path)
    scorer.load()
    yield scorer
    scorer.unload()


def test_insightface_model_zoo_loads_the_pack(face: FaceScorer) -> None:
    models = face._analyzer.app.models
    assert {k: type(v).__name__ for k, v in models.items()} == {
        "detection": "SCRFD", "recognition": "ArcFaceONNX", "landmark_3d_68": "Landmark"}
    assert sorted(p.name for p in Path(face._analyzer.feature_key.removeprefix("faces:")).glob("*.onnx")) == \
        sorted(BUFFALO_L.archive_members)


def test_no_face_gives_nulls_not_zeros(face: FaceScorer) -> None:
    out = face.score_batch([decoded(face_image([]))])[0]
    assert out["face_count"] == 0.0
    assert all(out[m] is None for m in face.metric_names() if m != "face_count")


def test_one_face_metrics_follow_from_the_image(face: FaceScorer) -> None:
    out = face.score_batch([decoded(face_image([(5, 5, 1)]))])[0]
    assert out["face_count"] == 1.0
    assert out["face_det_score"] == pytest.approx(0.9 * (255 - 127.5) / 128, abs=1e-3)
    side = math.sqrt(out["face_size_ratio"] * 640 * 640)
    assert side == pytest.approx(3 * 32, rel=0.01)  # a 3-cell box
    assert out["face_yaw"] == pytest.approx(YAW, abs=1.0) and out["face_pitch"] == pytest.approx(PITCH, abs=1.5)
    frontal = math.cos(math.radians(out["face_yaw"])) * math.cos(math.radians(out["face_pitch"]))
    assert out["face_frontalness"] == pytest.approx(frontal)
    expected = out["face_det_score"] * frontal * out["face_sharpness"] * (side / GOOD_FACE_SIDE)
    assert out["face_quality"] == pytest.approx(expected)
    assert all(0.0 <= out[m] <= 1.0 for m in ("face_sharpness", "face_quality"))


def test_largest_face_is_described(face: FaceScorer) -> None:
    small_bright = face_image([(3, 3, 1)], green=255)
    big_dim = face_image([(12, 12, 2)], green=210, red=255)
    both = np.where(big_dim.sum(axis=2, keepdims=True) > small_bright.sum(axis=2, keepdims=True), big_dim,
                    small_bright)
    out = face.score_batch([decoded(both)])[0]
    assert out["face_count"] == 2.0
    assert out["face_det_score"] == pytest.approx(0.9 * (210 - 127.5) / 128, abs=1e-3)  # the big one's
    assert out["face_size_ratio"] > 2.5 * 96 * 96 / (640 * 640)


def test_sharpness_and_quality_drop_with_blur(face: FaceScorer) -> None:
    sharp = face_image([(5, 5, 1)])
    soft = sharp.copy()
    soft[100:260, 100:260] = cv2.GaussianBlur(sharp, (0, 0), 2.5)[100:260, 100:260]
    soft[160:192, 160:192] = sharp[160:192, 160:192]  # keep the detectable block itself intact
    a, b = face.score_batch([decoded(sharp), decoded(soft)])
    assert b["face_count"] == 1.0
    assert b["face_sharpness"] < a["face_sharpness"] - 0.2
    assert b["face_quality"] < a["face_quality"]


def test_face_size_in_original_pixels_scales_quality(face: FaceScorer) -> None:
    rgb = face_image([(5, 5, 1)])
    reduced, full = face.score_batch([decoded(rgb), decoded(rgb, original=(1280, 1280))])
    assert full["face_size_ratio"] == pytest.approx(reduced["face_size_ratio"])
    side = math.sqrt(reduced["face_size_ratio"] * 640 * 640)  # about 96 px here, 192 px in the original
    assert full["face_quality"] == pytest.approx(reduced["face_quality"] * GOOD_FACE_SIDE / side)


def test_face_metrics_arithmetic() -> None:
    def f(bbox: tuple, score: float, yaw: float | None = 60.0) -> Face:
        return Face(bbox=bbox, det_score=score, embedding=None, yaw=yaw, pitch=0.0 if yaw is not None else None,
                    laplacian_var=SHARPNESS_HALF)

    half_out = f((-50.0, 0.0, 50.0, 100.0), 0.8)  # 100 x 100 box, half of it outside a 400 x 200 image
    out = face_metrics(ImageFaces((f((300, 0, 310, 10), 0.99), half_out), (400, 200)), (800, 400))
    assert out["face_count"] == 2.0 and out["face_det_score"] == 0.8  # the larger face, not the surer one
    assert out["face_size_ratio"] == pytest.approx(50 * 100 / (400 * 200))
    assert out["face_frontalness"] == pytest.approx(0.5) and out["face_sharpness"] == pytest.approx(0.5)
    assert out["face_quality"] == pytest.approx(0.8 * 0.5 * 0.5 * min(1.0, 200 / GOOD_FACE_SIDE))
    tie = face_metrics(ImageFaces((f((0, 0, 10, 10), 0.6), f((20, 20, 30, 30), 0.7)), (100, 100)), (100, 100))
    assert tie["face_det_score"] == 0.7
    no_pose = face_metrics(ImageFaces((f((0, 0, 10, 10), 0.6, yaw=None),), (100, 100)), (100, 100))
    assert no_pose["face_frontalness"] is None and no_pose["face_quality"] is None
    assert no_pose["face_sharpness"] == pytest.approx(0.5)


def test_batch_equals_one_by_one_and_odd_inputs(face: FaceScorer) -> None:
    rgbs = [face_image([(5, 5, 1)]), face_image([]), face_image([(2, 2, 3), (10, 14, 4)], size=(640, 480)),
            np.zeros((1, 1, 3), np.uint8), np.full((3, 300, 3), 255, np.uint8)]
    together = face.score_batch([decoded(r) for r in rgbs])
    alone = [face.score_batch([decoded(r)])[0] for r in rgbs]
    assert together == alone
    assert [o["face_count"] for o in together] == [1.0, 0.0, 2.0, 0.0, 0.0]


def test_face_and_identity_share_one_analysis(pack: WeightSpec, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    refs = tmp_path / "refs"
    save(face_image([(4, 6, 1)], seed=5), refs / "a.png")
    face_cls, identity_cls = classes(pack)
    f = face_cls(device="cpu", cache_dir=tmp_path / "c")
    i = identity_cls(device="cpu", cache_dir=tmp_path / "c", options={"reference_dir": str(refs)})
    f.load()
    i.load()
    assert f._analyzer is i._analyzer and _ANALYZERS.users(f._key) == 2
    calls = []
    original = f._analyzer.detect
    monkeypatch.setattr(f._analyzer, "detect", lambda rgb: calls.append(1) or original(rgb))
    batch = [decoded(face_image([(5, 5, 1)])), decoded(face_image([]))]
    f.score_batch(batch)
    i.score_batch(batch)
    assert len(calls) == 2
    f.unload()
    i.unload()
    assert _ANALYZERS.users(f._key or ("none",)) == 0


def test_identity_similarity(pack: WeightSpec, tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    save(face_image([(4, 6, 1)], seed=5), refs / "person1.png")
    save(face_image([], seed=6), refs / "landscape.png")  # no face: skipped
    (refs / "notes.txt").write_text("not an image")
    identity = classes(pack)[1](device="cpu", cache_dir=tmp_path / "c", options={"reference_dir": str(refs)})
    assert identity.availability().ok
    identity.load()
    same, other, both, none = identity.score_batch([
        decoded(face_image([(10, 3, 1)], seed=1)), decoded(face_image([(10, 3, 2)], seed=1)),
        decoded(face_image([(2, 2, 2), (12, 12, 1)], seed=2)), decoded(face_image([], seed=3))])
    assert same["identity_similarity"] == pytest.approx(1.0, abs=1e-3)
    assert other["identity_similarity"] < 0.9
    assert both["identity_similarity"] == pytest.approx(1.0, abs=1e-3)  # the best of its faces
    assert none["identity_similarity"] is None
    identity.unload()


def test_identity_availability_and_reference_errors(pack: WeightSpec, tmp_path: Path) -> None:
    identity_cls = classes(pack)[1]
    assert identity_cls(device="cpu").availability().reason == "no reference photos given (score with --reference DIR)"
    missing = identity_cls(device="cpu", options={"reference_dir": str(tmp_path / "nope")})
    assert "reference folder not found" in missing.availability().reason
    with pytest.raises(WeightsUnavailable, match="reference folder not found"):
        missing.load()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images in reference folder" in identity_cls(options={"reference_dir": str(empty)}).availability().reason
    faceless = tmp_path / "faceless"
    save(face_image([]), faceless / "a.png")
    scorer = identity_cls(device="cpu", cache_dir=tmp_path / "c", options={"reference_dir": str(faceless)})
    with pytest.raises(WeightsUnavailable, match="no face found in any of the 1 reference photos"):
        scorer.load()
    scorer.unload()


def test_reference_set_changes_the_run_version(pack: WeightSpec, tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    save(face_image([(4, 6, 1)]), refs / "a.png")
    identity_cls = classes(pack)[1]
    v1 = identity_cls(options={"reference_dir": str(refs)}).run_version()
    assert v1.startswith("1+refs.") and v1 == identity_cls(options={"reference_dir": str(refs)}).run_version()
    save(face_image([(4, 6, 2)]), refs / "a.png")  # same name, new content
    v2 = identity_cls(options={"reference_dir": str(refs)}).run_version()
    save(face_image([(4, 6, 2)]), refs / "b.png")
    v3 = identity_cls(options={"reference_dir": str(refs)}).run_version()
    assert len({v1, v2, v3}) == 3


def test_unavailable_offline_without_buffalo(tmp_path: Path) -> None:
    scorer = FaceScorer(device="cpu", cache_dir=tmp_path)
    status = scorer.availability()
    assert not status.ok and status.reason.startswith("weights insightface-buffalo-l not in cache and HF_HUB_OFFLINE=1")
    with pytest.raises(WeightsUnavailable):
        scorer.load()


def test_engine_rescores_identity_when_references_change(pack: WeightSpec, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root, refs = tmp_path / "data", tmp_path / "refs"
    save(face_image([(5, 5, 1)]), root / "person1.png")
    save(face_image([]), root / "empty.png")
    save(face_image([(4, 6, 1)], seed=9), refs / "ref.png")
    face_cls, identity_cls = classes(pack)
    monkeypatch.setitem(scorers_base._REGISTRY, "face", face_cls)
    monkeypatch.setitem(scorers_base._REGISTRY, "identity", identity_cls)

    def run(options: dict[str, Any]) -> dict[str, tuple]:
        scorers = [face_cls(device="cpu", cache_dir=tmp_path / "c"),
                   identity_cls(device="cpu", cache_dir=tmp_path / "c", options=options)]
        con = connect(tmp_path / "db.duckdb")
        try:
            progress = ScoringJob(con, root, scorers, batch_size=2).run()
            assert progress.state == "done" and not progress.unavailable
            return {r[0]: r[1:] for r in con.execute(
                "SELECT path, face_count, face_quality, identity_similarity FROM image_scores").fetchall()}
        finally:
            con.close()
            for s in scorers:
                s.unload()

    first = run({"reference_dir": str(refs)})
    assert first["empty.png"] == (0.0, None, None)
    assert first["person1.png"][0] == 1.0 and first["person1.png"][2] == pytest.approx(1.0, abs=1e-3)
    save(face_image([(4, 6, 2)], seed=9), refs / "ref.png")  # a different character
    second = run({"reference_dir": str(refs)})
    assert second["person1.png"][2] < 0.9 and second["person1.png"][:2] == first["person1.png"][:2]
