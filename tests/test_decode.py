from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from curator.decode import DecodeError, decode, read_file
from tests.images import good_and_bad_folder, photo, save


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], dict[str, str]]:
    base = tmp_path_factory.mktemp("decode")
    good, bad = good_and_bad_folder(base / "root", base / "outside")
    return base / "root", good, bad


def test_every_awkward_mode_decodes_to_8bit_rgb(folder) -> None:
    root, good, _ = folder
    for rel in sorted(good):
        img = decode(read_file(root / rel).data, rel, None)
        assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3, rel
        assert img.size == img.original_size, rel


def test_sixteen_bit_is_scaled_not_clipped(folder) -> None:
    root, _, _ = folder
    gray = decode(read_file(root / "16bit_gray.png").data, "x", None)
    assert gray.source_bits == 16
    assert np.array_equal(gray.rgb[..., 0], photo(1)[..., 0])  # written as value * 257
    color = decode(read_file(root / "16bit_rgb.png").data, "x", None)
    assert np.abs(color.rgb.astype(int) - photo(1)).max() <= 1


def test_exif_orientation_is_applied_like_pillow(folder) -> None:
    root, _, _ = folder
    img = decode(read_file(root / "rotated_exif.jpg").data, "x", None)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(root / "rotated_exif.jpg")).convert("RGB"))
    assert img.original_size == (200, 300)
    assert np.array_equal(img.rgb, reference)


def test_alpha_is_flattened_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    save(rgba, tmp_path / "a.png")
    img = decode(read_file(tmp_path / "a.png").data, "a.png", None)
    assert tuple(img.rgb[0, 0]) == (255, 0, 0) and tuple(img.rgb[7, 7]) == (255, 255, 255)


def test_large_jpeg_is_decoded_reduced_but_not_below_the_size_asked(tmp_path: Path) -> None:
    save(photo(0, (2400, 1600)), tmp_path / "big.jpg", quality=90)
    data = read_file(tmp_path / "big.jpg").data
    img = decode(data, "big.jpg", 512)
    assert img.original_size == (2400, 1600)
    assert 512 <= max(img.size) < 2400
    assert max(decode(data, "big.jpg", None).size) == 2400


@pytest.mark.parametrize("rel", ["empty.jpg", "truncated.jpg", "text.jpg", "bomb.png"])
def test_broken_files_raise_with_a_reason(folder, rel: str) -> None:
    root, _, bad = folder
    with pytest.raises(DecodeError, match=bad[rel]):
        decode(read_file(root / rel).data, rel, None)


def test_read_file_hashes_the_bytes(tmp_path: Path) -> None:
    import hashlib

    (tmp_path / "f.png").write_bytes(b"abc")
    assert read_file(tmp_path / "f.png").sha256 == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(DecodeError, match="cannot read"):
        read_file(tmp_path / "missing.png")
