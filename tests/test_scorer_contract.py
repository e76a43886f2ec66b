"""Every registered scorer keeps the contract: declared metrics only, values in range, any input mode.

Scorers whose weights cannot exist here must say so (unavailable, with a reason) and refuse to load
rather than fall back to random weights.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from curator.decode import decode, read_file
from scorers import registered
from scorers.base import DecodedImage, Scorer, WeightsUnavailable
from tests.images import good_and_bad_folder, photo

SCORERS = list(registered().values())


def _inputs(tmp: Path) -> list[DecodedImage]:
    good_and_bad_folder(tmp / "root", tmp / "outside")
    picks = ["gray.png", "rgba.png", "16bit_gray.png", "16bit_rgb.png", "cmyk.jpg", "palette_transparent.png",
             "animated.gif", "rotated_exif.jpg"]
    images = [decode(read_file(tmp / "root" / rel).data, rel, 1024) for rel in picks]
    for name, arr in {
        "tiny_1x1": photo(1, (1, 1)), "tiny_8x8": photo(2, (8, 8)), "strip_300x3": photo(3, (300, 3)),
        "flat_black": np.zeros((64, 64, 3), np.uint8), "flat_white": np.full((64, 64, 3), 255, np.uint8),
        "photo": photo(4, (640, 480)),
    }.items():
        images.append(DecodedImage(path=name, rgb=arr, original_size=(arr.shape[1], arr.shape[0])))
    return images


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[DecodedImage]:
    return _inputs(tmp_path_factory.mktemp("contract"))


def _loaded(cls: type[Scorer]) -> Scorer:
    scorer = cls(device="cpu")
    status = scorer.availability()
    if not status.ok:
        assert status.reason, f"{cls.name}: unavailable without a reason"
        with pytest.raises(WeightsUnavailable):
            scorer.load()
        pytest.skip(f"{cls.name} unavailable here: {status.reason}")
    scorer.load()
    return scorer


def test_registry_is_not_empty() -> None:
    assert SCORERS, "no scorer registered"


@pytest.mark.parametrize("cls", SCORERS, ids=lambda c: c.name)
def test_declarations(cls: type[Scorer]) -> None:
    assert cls.name and cls.version and cls.metrics is not None
    for m in cls.metrics:
        assert isinstance(m.higher_is_better, bool)
        assert m.description, f"{m.name} has no description"


@pytest.mark.parametrize("cls", SCORERS, ids=lambda c: c.name)
def test_outputs_are_declared_metrics_in_range(cls: type[Scorer], inputs: list[DecodedImage]) -> None:
    scorer = _loaded(cls)
    outputs = scorer.score_batch(inputs)
    assert len(outputs) == len(inputs)
    names = set(cls.metric_names())
    for image, out in zip(inputs, outputs):
        assert set(out) == names, f"{cls.name} on {image.path}: keys {sorted(out)} != declared {sorted(names)}"
        for m in cls.metrics:
            v = out[m.name]
            if v is None:
                continue
            assert isinstance(v, (float, int)) and math.isfinite(v), f"{m.name}={v!r} on {image.path}"
            if m.min is not None:
                assert v >= m.min - 1e-9, f"{m.name}={v} below {m.min} on {image.path}"
            if m.max is not None:
                assert v <= m.max + 1e-9, f"{m.name}={v} above {m.max} on {image.path}"


@pytest.mark.parametrize("cls", SCORERS, ids=lambda c: c.name)
def test_batch_equals_one_by_one(cls: type[Scorer], inputs: list[DecodedImage]) -> None:
    scorer = _loaded(cls)
    batch = scorer.score_batch(inputs[-4:])
    single = [scorer.score_batch([im])[0] for im in inputs[-4:]]
    for b, s in zip(batch, single):
        for k in b:
            if b[k] is None or s[k] is None:
                assert b[k] is None and s[k] is None
            else:
                assert b[k] == pytest.approx(s[k], rel=1e-4, abs=1e-4), k
