"""Extracting uploaded zips: only images, never outside the target folder, within the limits."""
import io
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from curator.uploads import Limits, UploadError, extract_zip, safe_member_path
from tests.images import photo


def jpeg_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(seed, (64, 48))).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def make_zip(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None,
             stored: bool = False) -> Path:
    """A zip of `entries` (names kept exactly as given, '/abs' and '..' included) and symlink entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_only_images_are_extracted_and_nothing_escapes(tmp_path: Path) -> None:
    outside = tmp_path / "evil.jpg"
    z = make_zip(tmp_path / "shoot.zip", {
        "a.jpg": jpeg_bytes(1),
        "sub/dir/b.JPG": jpeg_bytes(2),
        "../evil.jpg": jpeg_bytes(3),
        "/abs/evil.jpg": jpeg_bytes(3),
        "x/../../evil.jpg": jpeg_bytes(3),
        "C:/evil.jpg": jpeg_bytes(3),
        "..\\evil.jpg": jpeg_bytes(3),
        "notes.txt": b"hello",
        "__MACOSX/._a.jpg": b"resource fork",
        ".hidden.jpg": jpeg_bytes(4),
    }, symlinks={"link.jpg": "/etc/passwd"})
    out = extract_zip(z, dest_parent=tmp_path / "uploads")
    files = sorted(p.relative_to(out.root).as_posix() for p in out.root.rglob("*") if p.is_file())
    assert [f for f in files if not f.startswith(".curator")] == ["a.jpg", "sub/dir/b.JPG"]
    assert out.images == 2 and not out.reused
    assert not outside.exists() and not Path("/abs/evil.jpg").exists()
    reasons = dict(out.skipped)
    for name in ("../evil.jpg", "/abs/evil.jpg", "x/../../evil.jpg", "C:/evil.jpg", "..\\evil.jpg"):
        assert "unsafe path" in reasons[name]
    assert reasons["notes.txt"] == "not an image file"
    assert reasons["link.jpg"] == "symbolic link"
    assert out.root.parent == tmp_path / "uploads" and out.root.name.startswith("shoot-")


def test_same_zip_reopens_the_same_folder(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "s.zip", {"a.jpg": jpeg_bytes(1)})
    first = extract_zip(z, name="My Shoot.zip", dest_parent=tmp_path / "u")
    again = extract_zip(z, name="My Shoot.zip", dest_parent=tmp_path / "u")
    assert again.root == first.root and again.reused and again.images == 1
    assert first.root.name.startswith("My-Shoot-")
    other = extract_zip(make_zip(tmp_path / "t.zip", {"b.jpg": jpeg_bytes(2)}), name="My Shoot.zip",
                        dest_parent=tmp_path / "u")
    assert other.root != first.root   # same name, different content: a different dataset


def test_zip_bomb_entries_are_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "bomb.zip", {"flat.bmp": b"\0" * 5_000_000, "ok.jpg": jpeg_bytes(1)})
    out = extract_zip(z, dest_parent=tmp_path / "u")
    assert dict(out.skipped)["flat.bmp"].startswith("suspicious compression ratio")
    assert out.images == 1


def test_limits_on_count_and_size(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "many.zip", {f"{i}.jpg": jpeg_bytes(i) for i in range(4)})
    with pytest.raises(UploadError, match="over the limit of 3"):
        extract_zip(z, dest_parent=tmp_path / "u", limits=Limits(max_files=3))
    with pytest.raises(UploadError, match="total"):
        extract_zip(z, dest_parent=tmp_path / "u", limits=Limits(max_total_bytes=1000))
    small = extract_zip(z, dest_parent=tmp_path / "u", limits=Limits(max_file_bytes=len(jpeg_bytes(0)) + 1))
    assert small.images >= 1 and all("larger than" in r for _, r in small.skipped)
    assert not any(p.name.startswith(".extract-") for p in (tmp_path / "u").iterdir())   # failures leave nothing


def test_not_a_zip_or_no_images(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UploadError, match="not a readable zip"):
        extract_zip(bad, dest_parent=tmp_path / "u")
    with pytest.raises(UploadError, match="no image files"):
        extract_zip(make_zip(tmp_path / "txt.zip", {"a.txt": b"x"}), dest_parent=tmp_path / "u")


@pytest.mark.parametrize("name,expected", [
    ("a/b.jpg", "a/b.jpg"), ("./a//b.jpg", "a/b.jpg"), ("a\\b.jpg", "a/b.jpg"),
    ("../a.jpg", None), ("/a.jpg", None), ("D:\\a.jpg", None), ("a/../../b.jpg", None), ("", None),
])
def test_safe_member_path(name: str, expected: str | None) -> None:
    got = safe_member_path(name)
    assert (None if got is None else got.as_posix()) == expected
