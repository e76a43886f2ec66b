"""Open datasets as the app holds them: one per folder, scored in the background, paged with thumbnails."""
import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from curator.session import ScoringOptions, Workspace
from storage import browse, decisions
from tests.images import photo, save

SCORERS = ScoringOptions(scorers=["sharpness", "noise"], device="cpu")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i in range(7):
        save(photo(i, (300, 200)), tmp_path / "shoot" / f"{i}.jpg", quality=90)
    (tmp_path / "shoot" / "broken.png").write_bytes(b"nope")
    return tmp_path / "shoot"


def test_one_open_dataset_per_folder_scored_in_the_background(folder: Path) -> None:
    ws = Workspace(SCORERS)
    ds = ws.open(folder)
    assert ws.open(folder / ".." / folder.name) is ds and ws.get(ds.key) is ds
    ds.job.join(60)
    p = ds.progress()
    assert (p.state, p.done, p.total, p.errors) == ("done", 8, 8, 1)
    assert ds.scorers_in_use() == {"sharpness", "noise"}

    pv = ds.page(browse.View(), 1, per_page=3)
    assert (pv.number, pv.pages, pv.page.total) == (1, 3, 8)
    assert all(t.exists() and t.parent.parent == ds.thumbs.folder for t in pv.thumbnails)
    with Image.open(pv.thumbnails[0]) as im:
        assert max(im.size) <= 256
    last = ds.page(browse.View(), 99, per_page=3)      # past the end: the last page
    assert (last.number, len(last.page.rows)) == (3, 2)
    assert last.page.rows["status"].iloc[-1] == "error"
    assert last.thumbnails[-1] == ds.thumbs.placeholder(256)

    version = pv.version
    decisions.decide(ds.con, [int(pv.page.rows["image_id"][0])], "accepted", session="t")
    assert ds.version() != version                      # tabs redraw after anyone's decision
    assert ds.start_scoring() and ds.job.join(60) is None and ds.progress().state == "done"
    ws.close()


def test_distributions_are_kept_until_scores_or_weights_change(folder: Path) -> None:
    ws = Workspace(SCORERS)
    ds = ws.open(folder)
    ds.job.join(60)
    ds.page(browse.View(), 1)
    first = ds.distributions({})
    again = ds.distributions({})
    assert again["sharpness"] is first["sharpness"] and again["ensemble"] is first["ensemble"]
    reweighted = ds.distributions({"noise_sigma": 0.0})
    assert reweighted["sharpness"] is first["sharpness"] and reweighted["ensemble"] is not first["ensemble"]
    assert len(first["sharpness"].values) == 7          # the broken file has no values
    image = int(ds.page(browse.View(), 1).page.rows["image_id"][0])
    preview = ds.preview(image)
    with Image.open(preview) as im:
        assert max(im.size) == 300                      # previews are never upscaled
    ws.close()


def test_open_refuses_a_missing_folder_and_opens_zips(tmp_path: Path) -> None:
    ws = Workspace(SCORERS)
    with pytest.raises(ValueError, match="not found"):
        ws.open(tmp_path / "nope")
    buf = io.BytesIO()
    Image.fromarray(photo(1, (120, 90))).save(buf, "JPEG")
    with zipfile.ZipFile(tmp_path / "up.zip", "w") as zf:
        zf.writestr("a.jpg", buf.getvalue())
        zf.writestr("../escape.jpg", buf.getvalue())
    ds, extracted = ws.open_zip(tmp_path / "up.zip", "My upload.zip")
    assert ds.root == extracted.root and extracted.images == 1 and ds.root.name.startswith("My-upload-")
    ds.job.join(60)
    assert ds.progress().done == 1
    ws.close()
