"""The identity scorer's reference photos as the dashboard sets them: kept with the dataset (so a
restart still has them), and scoring restarted so identity is computed while every other score stays.

The identity scorer runs insightface on the test-made ONNX pack of tests/face_models.py (no real
weights exist here); its "faces" are pixel blocks, so which image matches the references is known.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from curator.session import REFERENCE, ScoringOptions, Workspace
from scorers import base as scorers_base
from scorers.face import BUFFALO_L
from storage.db import get_setting
from tests.face_models import buffalo_like_zip, face_image
from tests.images import save
from tests.test_face import classes
from tests.weight_files import file_spec

OPTIONS = ScoringOptions(scorers=["sharpness", "identity"], device="cpu", batch_size=4)


@pytest.fixture
def identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's identity scorer, on the test-made face models."""
    pack = file_spec(buffalo_like_zip(tmp_path / "buffalo_test.zip"), "test-buffalo",
                     archive_members=BUFFALO_L.archive_members)
    monkeypatch.setitem(scorers_base._REGISTRY, "identity", classes(pack)[1])


def similarities(ds) -> dict[str, float | None]:
    return dict(ds.con.execute("SELECT path, identity_similarity FROM image_scores").fetchall())


def test_reference_folder_is_kept_with_the_dataset_and_scores_identity(tmp_path: Path, identity) -> None:
    root, refs = tmp_path / "shoot", tmp_path / "refs"
    save(face_image([(5, 5, 1)]), root / "character.png")
    save(face_image([(5, 5, 2)]), root / "someone_else.png")
    save(face_image([]), root / "no_face.png")
    save(face_image([(4, 6, 1)], seed=9), refs / "portrait.png")

    ws = Workspace(OPTIONS)
    ds = ws.open(root)
    ds.job.join(120)
    p = ds.progress()
    assert p.state == "done" and p.unavailable == {"identity": "no reference photos given (score with --reference DIR)"}
    assert ds.reference() is None and set(similarities(ds).values()) == {None}
    sharpness_runs = ds.con.execute("SELECT image_id, scored_at FROM scorer_runs WHERE scorer = 'sharpness'").fetchall()

    with pytest.raises(ValueError, match="reference folder not found"):
        ds.set_reference(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in reference folder"):
        ds.set_reference(tmp_path / "empty")
    assert ds.reference() is None

    assert ds.set_reference(refs) == refs.resolve()
    ds.job.join(120)
    p = ds.progress()
    assert p.state == "done" and not p.unavailable and p.total == 3, p   # the three images, for identity only
    sims = similarities(ds)
    assert sims["character.png"] == pytest.approx(1.0, abs=1e-3)
    assert sims["someone_else.png"] < 0.9 and sims["no_face.png"] is None
    assert ds.con.execute("SELECT image_id, scored_at FROM scorer_runs WHERE scorer = 'sharpness'").fetchall() \
        == sharpness_runs                                                # nothing else was scored again
    assert get_setting(ds.con, REFERENCE) == str(refs.resolve())
    ws.close()

    # A restart (a new workspace on the same folder) scores with the same references: nothing to do.
    ws = Workspace(OPTIONS)
    ds = ws.open(root)
    ds.job.join(120)
    p = ds.progress()
    assert ds.reference() == refs.resolve()
    assert (p.state, p.total, p.unchanged, p.unavailable) == ("done", 0, 3, {}), p
    assert similarities(ds)["character.png"] == pytest.approx(1.0, abs=1e-3)
    ws.close()


def test_open_with_a_reference_folder(tmp_path: Path, identity) -> None:
    """What `app.py FOLDER --reference DIR` does."""
    root, refs = tmp_path / "shoot", tmp_path / "refs"
    save(face_image([(5, 5, 1)]), root / "character.png")
    save(face_image([(4, 6, 1)], seed=9), refs / "portrait.png")
    ws = Workspace(OPTIONS)
    ds = ws.open(root, reference=refs)
    ds.job.join(120)
    assert ds.progress().state == "done" and not ds.progress().unavailable
    assert similarities(ds)["character.png"] == pytest.approx(1.0, abs=1e-3)
    ws.close()
