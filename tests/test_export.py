"""Export on a real dataset scored by the real engine: kohya layout, captions, manifest, idempotence,
path safety, hard links, processing, zip, and the CLI."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curator.cli import main
from curator.export import (
    STATE_FILE,
    ExportError,
    ExportOptions,
    _face_centre,
    export,
    export_zip,
    unique_stems,
)
from curator.job import ScoringJob
from scorers.phash import PerceptualHash
from storage import decisions
from storage.db import connect
from tests.images import photo, save

KOHYA_DIR = "10_ohwx woman"
OPTIONS = dict(trigger="ohwx", class_token="woman", caption_template="{class}, {caption}")


def _make_dataset(base: Path) -> Path:
    root = base / "root"
    save(photo(1), root / "a" / "frame.png")
    save(photo(2), root / "b" / "frame.png")                    # same name in another folder
    save(photo(3), root / "b" / "FRAME.jpg", quality=90)        # same stem, other case and format
    save(photo(4), root / "c" / "pic.webp", quality=90)         # a format not every trainer reads
    save(photo(5), root / "c" / "pic2.jpg", quality=90)
    (root / "c" / "pic2.txt").write_text("a woman smiling,\n outdoors\n")  # caption to carry over
    exif = Image.Exif()
    exif[0x0112] = 6                                            # displayed rotated by 90 degrees
    save(photo(6, (300, 200)), root / "rot.jpg", exif=exif, quality=90)
    save(photo(7), root / "ünï cödé.png")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("export")
    root = _make_dataset(base)
    db = base / "curator.duckdb"
    con = connect(db)
    assert ScoringJob(con, root, [PerceptualHash()], workers=1).run().state == "done"
    ids = [i for (i,) in con.execute("SELECT id FROM images").fetchall()]
    decisions.decide(con, ids, "accepted", session="browser-1")
    con.close()
    return root, db


@pytest.fixture
def con(dataset):
    c = connect(dataset[1], read_only=True)
    yield c
    c.close()


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _stat(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


def test_kohya_tree_captions_manifest_and_toml(dataset, con, tmp_path: Path) -> None:
    root, _ = dataset
    sources_before = _tree(root)
    out = tmp_path / "out"
    report = export(con, out, ExportOptions(**OPTIONS))
    assert report.images == 7 and not report.warnings

    files = _tree(out)
    top = {p.split("/")[0] for p in files}
    assert top == {KOHYA_DIR, "dataset.toml", "manifest.csv", "scores.parquet", STATE_FILE}
    images = sorted(p for p in files if p.endswith((".jpg", ".jpeg", ".png")))
    assert all(p.startswith(KOHYA_DIR + "/") and p.count("/") == 1 for p in images)
    names = [p.split("/")[1] for p in images]
    stems = [n.rsplit(".", 1)[0].casefold() for n in names]
    assert len(set(stems)) == 7                                      # no clash, case-insensitively
    assert sum(n.casefold().startswith("frame_") for n in names) == 3           # all three clashing names suffixed
    assert "pic.png" in names and "ünï cödé.png" in names            # webp converted, unicode kept
    for p in images:                                                 # every image has its caption
        caption = (out / p).with_suffix(".txt").read_text()
        assert caption.startswith("ohwx, woman")
    assert (out / KOHYA_DIR / "pic2.txt").read_text() == "ohwx, woman, a woman smiling, outdoors\n"
    with Image.open(out / KOHYA_DIR / "rot.jpg") as im:               # EXIF rotation baked in
        assert im.size == (200, 300) and im.getexif().get(0x0112, 1) == 1

    manifest = pd.read_csv(out / "manifest.csv")
    assert sorted(manifest["exported"]) == images
    for row in manifest.itertuples():
        assert files[row.exported] == row.sha256
        assert row.caption_file in files
        source = hashlib.sha256((root / row.source).read_bytes()).hexdigest()
        assert row.source_sha256 == source
        assert (row.sha256 == source) == (row.processing == "copy")
    assert set(manifest["decision"]) == {"accepted"} and "ensemble" in manifest.columns
    assert set(manifest.loc[manifest["processing"] != "copy", "source"]) == {"c/pic.webp", "rot.jpg"}
    parquet = pd.read_parquet(out / "scores.parquet")
    assert list(parquet.columns) == list(manifest.columns)
    assert list(parquet["exported"]) == list(manifest["exported"])
    assert list(parquet["sha256"]) == list(manifest["sha256"])
    assert np.allclose(parquet["ensemble"].astype(float), manifest["ensemble"], equal_nan=True)

    config = tomllib.loads((out / "dataset.toml").read_text())
    subset = config["datasets"][0]["subsets"][0]
    assert subset == {"image_dir": str(out.resolve() / KOHYA_DIR), "num_repeats": 10,
                      "class_tokens": "ohwx woman", "caption_extension": ".txt"}
    assert config["general"]["caption_extension"] == ".txt"
    dataset_cfg = config["datasets"][0]
    assert dataset_cfg["resolution"] == 1024 and dataset_cfg["enable_bucket"] is True
    assert dataset_cfg["min_bucket_reso"] % 64 == 0 and dataset_cfg["max_bucket_reso"] % 64 == 0
    assert _tree(root) == sources_before                              # sources untouched


def test_second_export_with_the_same_inputs_changes_nothing(con, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(con, out, ExportOptions(**OPTIONS))
    before = _stat(out)
    again = export(con, out, ExportOptions(**OPTIONS))
    assert again.written == [] and again.removed == [] and again.unchanged == len(before) - 2  # minus dir, state
    assert _stat(out) == before


def test_a_changed_selection_removes_only_files_the_export_wrote(con, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ids = [i for (i,) in con.execute("SELECT id FROM images ORDER BY path").fetchall()]
    export(con, out, ExportOptions(**OPTIONS), ids)
    (out / KOHYA_DIR / "notes.md").write_text("mine")                 # a person's file
    (out / KOHYA_DIR / ".aitk_size.json").write_text("{}")            # a trainer's cache file
    edited = out / KOHYA_DIR / "pic2.txt"
    edited.write_text("hand-edited caption\n")
    report = export(con, out, ExportOptions(**OPTIONS), ids[:2])
    assert report.images == 2
    assert (out / KOHYA_DIR / "notes.md").read_text() == "mine" and (out / KOHYA_DIR / ".aitk_size.json").exists()
    assert edited.read_text() == "hand-edited caption\n" and any("pic2.txt" in w for w in report.warnings)
    kept = {p for p in _tree(out) if p.endswith((".png", ".jpg"))}
    assert len(kept) == 2 and set(pd.read_csv(out / "manifest.csv")["exported"]) == kept
    assert "pic2.jpg" not in " ".join(kept) and f"{KOHYA_DIR}/pic2.jpg" in report.removed


def test_paths_with_dotdot_or_symlinks_cannot_escape_out(dataset, con, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("do not touch")
    before = _tree(outside)

    report = export(con, tmp_path / "x" / ".." / "out", ExportOptions(**OPTIONS))   # '..' resolves, stays
    assert report.out == (tmp_path / "out").resolve() and not (tmp_path / "x").exists()

    out = tmp_path / "out"
    for name in os.listdir(out / KOHYA_DIR):                                  # the image folder becomes a
        (out / KOHYA_DIR / name).unlink()                                     # symlink leaving OUT
    (out / KOHYA_DIR).rmdir()
    os.symlink(outside, out / KOHYA_DIR)
    with pytest.raises(ExportError, match="symlink"):
        export(con, out, ExportOptions(**OPTIONS))
    assert _tree(outside) == before

    (out / KOHYA_DIR).unlink()
    (out / KOHYA_DIR).mkdir()
    os.symlink(outside / "keep.txt", out / KOHYA_DIR / "pic2.txt")            # a file symlink inside OUT
    with pytest.raises(ExportError, match="symlink"):
        export(con, out, ExportOptions(**OPTIONS))
    assert _tree(outside) == before

    for bad in ({"trigger": "../../evil"}, {"class_token": "a/b"}, {"trigger": "x", "class_token": ".."}):
        with pytest.raises(ExportError, match="not allowed|unsafe"):
            export(con, tmp_path / "fresh", ExportOptions(**bad))
    with pytest.raises(ExportError, match="caption extension"):
        export(con, tmp_path / "fresh", ExportOptions(**OPTIONS, caption_extension="/../x"))
    assert not (tmp_path / "fresh").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "something.txt").write_text("x")
    with pytest.raises(ExportError, match="not a Curator export"):
        export(con, foreign, ExportOptions(**OPTIONS))
    with pytest.raises(ExportError, match="must not contain each other"):
        export(con, dataset[0] / "export", ExportOptions(**OPTIONS))
    assert not (dataset[0] / "export").exists()


def test_a_file_curator_did_not_write_is_never_overwritten(con, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(con, out, ExportOptions(**OPTIONS))
    (out / KOHYA_DIR / "pic2.jpg").unlink()
    state = (out / STATE_FILE).read_text().replace(f'"{KOHYA_DIR}/pic2.jpg"', '"gone"')
    (out / STATE_FILE).write_text(state)                      # as if pic2.jpg were never ours
    (out / KOHYA_DIR / "pic2.jpg").write_bytes(b"a person's own file")
    with pytest.raises(ExportError, match="not written by Curator"):
        export(con, out, ExportOptions(**OPTIONS))
    assert (out / KOHYA_DIR / "pic2.jpg").read_bytes() == b"a person's own file"


def test_hard_links_share_the_source_and_never_alter_it(dataset, con, tmp_path: Path) -> None:
    root, _ = dataset
    sources_before = _tree(root)
    out = tmp_path / "out"
    export(con, out, ExportOptions(**OPTIONS, link=True))
    manifest = pd.read_csv(out / "manifest.csv")
    linked = manifest[manifest["processing"] == "hard link"]
    assert len(linked) == 5                                   # all but the converted and the rotated
    for row in linked.itertuples():
        assert os.path.samefile(out / row.exported, root / row.source)
    export(con, out, ExportOptions(**OPTIONS))               # copies now: links become real files
    for row in linked.itertuples():
        assert not os.path.samefile(out / row.exported, root / row.source)
    assert _tree(root) == sources_before


def test_resize_and_crop(con, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = export(con, out, ExportOptions(**OPTIONS, resize=128, crop="center", convert="jpg"))
    for p in (out / KOHYA_DIR).glob("*.*"):
        if p.suffix in (".png", ".jpg"):
            with Image.open(p) as im:
                assert im.size == (128, 128)
    assert (out / KOHYA_DIR / "pic.jpg").exists() and not report.warnings
    small = export(con, tmp_path / "small", ExportOptions(**OPTIONS, resize=400))   # all are smaller
    processing = dict(pd.read_csv(tmp_path / "small" / "manifest.csv")[["source", "processing"]].values)
    assert {s for s, how in processing.items() if how != "copy"} == {"c/pic.webp", "rot.jpg"} and small.images == 7
    flat = export(con, tmp_path / "flat", ExportOptions(layout="flat", resize=160, crop="face"))
    assert len(flat.warnings) == 7 and all("no face found" in w for w in flat.warnings)  # synthetic photos
    assert tomllib.loads((tmp_path / "flat" / "dataset.toml").read_text())["datasets"][0]["subsets"][0][
        "image_dir"] == str((tmp_path / "flat").resolve())
    # no trigger word: only the carried-over caption makes a caption file
    assert [p.name for p in (tmp_path / "flat").glob("*.txt")] == ["pic2.txt"]


def test_face_crop_centres_on_the_face() -> None:
    import skimage.data

    astronaut = skimage.data.astronaut()                      # face at about x 190-285, y 60-160
    x, y = _face_centre(astronaut)
    assert 190 < x < 285 and 60 < y < 160


def test_names_do_not_depend_on_the_other_images() -> None:
    full = unique_stems(["a/x.png", "b/x.png", "c/X.jpg", "d/y.png", "e/.hidden.png", "f/CON.png"])
    part = unique_stems(["b/x.png", "c/X.jpg"])
    assert full["b/x.png"] == part["b/x.png"] and full["c/X.jpg"] == part["c/X.jpg"]
    assert full["d/y.png"] == "y" and full["e/.hidden.png"] == "hidden" and full["f/CON.png"] == "CON_"
    assert len({s.casefold() for s in full.values()}) == len(full)


def test_zip_holds_the_export_and_is_reproducible(con, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(con, out, ExportOptions(**OPTIONS, relative_paths=True))
    first = export_zip(out).read_bytes()
    second = export_zip(out, tmp_path / "again.zip").read_bytes()
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        content = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()}
        toml = tomllib.loads(zf.read("dataset.toml").decode())
    assert content == {k: v for k, v in _tree(out).items() if k != STATE_FILE}
    assert toml["datasets"][0]["subsets"][0]["image_dir"] == KOHYA_DIR
    with pytest.raises(ExportError, match="inside OUT"):
        export_zip(out, out / "x.zip")


def test_cli_export_and_one_line_errors(dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, db = dataset
    out = tmp_path / "cli-out"
    args = ["export", str(out), "--db", str(db), "--trigger", "ohwx", "--class-token", "woman", "--zip"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "exported 7 images" in printed and (tmp_path / "cli-out.zip").exists()
    assert main(args) == 0 and "0 files written" in capsys.readouterr().out
    undecided = tmp_path / "undecided.duckdb"
    shutil.copyfile(db, undecided)
    with connect(undecided) as c:
        decisions.decide(c, [i for (i,) in c.execute("SELECT id FROM images").fetchall()], "undecided", "browser-1")
    assert main(["export", str(tmp_path / "o2"), "--db", str(undecided), "--strategy", "diverse", "-k", "3",
                 "--layout", "flat"]) == 0
    assert len(pd.read_csv(tmp_path / "o2" / "manifest.csv")) == 3
    assert "diverse: 3 images" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "o3"), "--db", str(db), "--trigger", "../x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("curator: error:") and "../x" in err[0]
    assert main(["select", "--db", str(db), "--strategy", "diverse"]) == 2
    assert "target size" in capsys.readouterr().err
    assert main(["dedupe", "--db", str(db), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []          # seven different photos: no near-duplicates
