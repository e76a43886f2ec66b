"""Thumbnails: made once per content and size, small, oriented, and a placeholder for broken files."""
import hashlib
import os
from pathlib import Path

from PIL import Image

from curator.thumbnails import ThumbnailCache
from tests.images import photo, save


def test_thumbnail_is_small_made_once_and_keyed_by_content(tmp_path: Path) -> None:
    src = save(photo(1, (900, 600)), tmp_path / "data" / "a.jpg", quality=90)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = ThumbnailCache(tmp_path / "thumbs")
    first = cache.get(src, None, 256)        # hash not known yet: computed from the file
    assert first == cache.path_for(sha, 256)
    with Image.open(first) as im:
        assert im.format == "JPEG" and max(im.size) == 256 and im.size == (256, 171)
    mtime = first.stat().st_mtime_ns
    os.utime(first, ns=(mtime - 10**9, mtime - 10**9))
    assert cache.get(src, sha, 256) == first and first.stat().st_mtime_ns == mtime - 10**9   # not remade
    copy = save(photo(1, (900, 600)), tmp_path / "data" / "renamed.jpg", quality=90)
    assert cache.get(copy, None, 256) == first                                            # same content
    big = cache.get(src, sha, 1024)
    with Image.open(big) as im:
        assert max(im.size) == 900                                                         # never upscaled
    cache.close()


def test_exif_rotation_applies_and_broken_files_get_a_placeholder(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    src = save(photo(2, (300, 200)), tmp_path / "r.jpg", exif=exif, quality=90)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    cache = ThumbnailCache(tmp_path / "thumbs")
    paths = cache.many([(src, None), (broken, None), (tmp_path / "missing.jpg", None)], 128)
    with Image.open(paths[0]) as im:
        assert im.size == (85, 128)   # portrait after EXIF orientation
    assert paths[1] == paths[2] == cache.placeholder(128)
    cache.close()


def test_prefetch_makes_thumbnails_in_the_background(tmp_path: Path) -> None:
    sources = [save(photo(i, (200, 150)), tmp_path / f"{i}.png") for i in range(3)]
    cache = ThumbnailCache(tmp_path / "thumbs")
    cache.prefetch([(s, None) for s in sources], 64)
    made = cache.many([(s, None) for s in sources], 64)   # waits for (or joins) the background work
    assert len(set(made)) == 3 and all(p.exists() for p in made)
    cache.close()
