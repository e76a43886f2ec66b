"""Real image files for tests: photo-like images, every awkward mode, and deliberately broken files."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def photo(seed: int = 0, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A photo-like RGB image: smooth gradients, shapes with edges, fine texture. Deterministic."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        60 + 120 * (xx / w) + 30 * np.sin(yy / (17 + seed % 7)),
        80 + 100 * (yy / h),
        140 - 60 * (xx / w) + 20 * np.cos(xx / (23 + seed % 5)),
    ], axis=-1)
    img = base.copy()
    for _ in range(12):
        color = rng.uniform(20, 235, 3)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, max(2, min(w, h) / 4))
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
        img[mask] = color
    for _ in range(6):
        x0, y0 = int(rng.uniform(0, w * 0.9)), int(rng.uniform(0, h * 0.9))
        img[y0:y0 + int(rng.uniform(1, h / 3 + 1)), x0:x0 + int(rng.uniform(1, w / 3 + 1))] = rng.uniform(0, 255, 3)
    texture = cv2.GaussianBlur(rng.normal(0, 18, (h, w)).astype(np.float32), (0, 0), 0.8)
    img += texture[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def save(arr: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def write_png_with_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header claims `width` x `height`: a decompression bomb's signature."""
    small = Path(str(path) + ".tmp.png")
    Image.new("L", (4, 4)).save(small)
    data = bytearray(small.read_bytes())
    small.unlink()
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def good_and_bad_folder(root: Path, outside: Path) -> tuple[set[str], dict[str, str]]:
    """Fill `root` with good images in awkward formats and broken files.

    Returns (relative paths of the good images, {relative path of a bad file: a word its reason
    must contain}). `outside` is a folder beside the root for the symlink that leaves it."""
    good: set[str] = set()
    rgb = photo(1)

    def add(rel: str, img: Image.Image, **kw) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p, **kw)
        good.add(rel)

    add("plain.jpg", Image.fromarray(rgb), quality=90)
    add("UPPER.JPEG", Image.fromarray(photo(2)), quality=90)
    add("deep/nested/dir/photo.png", Image.fromarray(photo(3)))
    add("gray.png", Image.fromarray(rgb).convert("L"))
    add("rgba.png", Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])))
    add("palette_transparent.png", Image.fromarray(rgb).convert("P"), transparency=0)
    add("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=90)
    add("bilevel.bmp", Image.fromarray(rgb).convert("1"))
    add("image.webp", Image.fromarray(rgb), quality=80)
    add("image.TIF", Image.fromarray(rgb))
    add("16bit_gray.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))
    frames = [Image.fromarray(photo(s)) for s in (4, 5, 6)]
    p = root / "animated.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    good.add("animated.gif")
    p16 = root / "16bit_rgb.png"
    cv2.imwrite(str(p16), (rgb[..., ::-1].astype(np.uint16) * 257))
    good.add("16bit_rgb.png")
    add("ünïcödé 写真 with spaces.png", Image.fromarray(photo(7)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    add("rotated_exif.jpg", Image.fromarray(photo(8, (300, 200))), exif=exif, quality=90)

    bad: dict[str, str] = {}
    (root / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty"
    data = (root / "plain.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    bad["truncated.jpg"] = "truncated"
    (root / "text.jpg").write_text("this is not an image\n" * 20)
    bad["text.jpg"] = "not a recognised image"
    write_png_with_size(root / "bomb.png", 40000, 40000)
    bad["bomb.png"] = "decompression bomb"
    outside.mkdir(parents=True, exist_ok=True)
    save(photo(9), outside / "secret.png")
    os.symlink(outside / "secret.png", root / "escape.png")
    bad["escape.png"] = "outside"
    os.symlink(root, root / "deep" / "loop")  # a directory loop: must not hang or duplicate
    os.symlink(outside, root / "outside_dir")  # a directory leaving the root: not entered
    (root / "notes.txt").write_text("not an image extension: ignored")
    return good, bad


def many_small(root: Path, n: int, size: tuple[int, int] = (160, 120), start: int = 0) -> list[str]:
    """`n` small, varied images (JPEGs of several qualities, every fifth a PNG) written fast enough
    for datasets of thousands: coarse random colour fields, scaled up, blurred and noised by seed.
    `start` numbers them on from an earlier call. Returns their relative paths."""
    w, h = size
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        coarse = rng.integers(0, 256, (3 + i % 6, 4 + i % 7, 3), dtype=np.uint8)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        if i % 3 == 1:
            img = cv2.GaussianBlur(img, (0, 0), 0.5 + i % 4)
        img += rng.normal(0, 1 + i % 13, img.shape).astype(np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        png = i % 5 == 0
        name = f"{i // 500:02d}/f{i:05d}." + ("png" if png else "jpg")
        (root / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(root / name), img, [] if png else [cv2.IMWRITE_JPEG_QUALITY, 40 + i % 56])
        names.append(name)
    return names
