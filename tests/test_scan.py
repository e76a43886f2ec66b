from pathlib import Path

import pytest

from curator.scan import ScanError, scan
from tests.images import good_and_bad_folder, photo, save


def test_scan_finds_images_recursively_any_case_and_skips_other_files(tmp_path: Path) -> None:
    for rel in ("a.jpg", "B.PNG", "c.JpEg", "d/e.webp", "d/f/g.bmp", "h.tif", "i.TIFF", "j.gif"):
        save(photo(0, (16, 16)), tmp_path / rel)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "archive.jpg.bak").write_text("x")
    found = [f.rel for f in scan(tmp_path)]
    assert found == sorted(["B.PNG", "a.jpg", "c.JpEg", "d/e.webp", "d/f/g.bmp", "h.tif", "i.TIFF", "j.gif"])
    assert all(f.error is None and f.bytes and f.mtime for f in scan(tmp_path))


def test_symlinks_leaving_the_root_are_reported_and_loops_end(tmp_path: Path) -> None:
    root = tmp_path / "root"
    good, bad = good_and_bad_folder(root, tmp_path / "outside")
    found = {f.rel: f for f in scan(root)}
    assert "escape.png" in found and "outside" in found["escape.png"].error
    assert not any(rel.startswith("outside_dir/") for rel in found), "entered a folder outside the root"
    assert not any("/loop/" in rel for rel in found), "followed a symlink loop"
    assert good <= set(found)


def test_symlinked_folder_inside_root_is_listed_once_under_its_real_path(tmp_path: Path) -> None:
    save(photo(0, (16, 16)), tmp_path / "real" / "x.png")
    save(photo(0, (16, 16)), tmp_path / "elsewhere" / "y.png")
    (tmp_path / "a_alias").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "link_to_elsewhere").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "z.png").symlink_to(tmp_path / "real" / "x.png")
    assert [f.rel for f in scan(tmp_path)] == ["elsewhere/y.png", "real/x.png", "z.png"]


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="not found"):
        scan(tmp_path / "nope")
