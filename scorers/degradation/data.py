"""Clean sources and randomly degraded, labelled samples for the degradation network.

Everything here is synthetic on purpose: we cannot download a labelled quality dataset, but we can
take images we may legally use (photos that installed packages ship, and images generated here),
degrade them with known parameters and use those parameters as labels.

Splits are by *source*, never by sample, so the held-out benchmark measures images the network has
not seen in any form: different photos, a procedural family absent from training, and different
fonts for the watermarks.

Labels (one per head, 0 = absent, 1 = severe), measured at the resolution the network sees:
- blur: equivalent Gaussian sigma / 4 px (Gaussian, motion, defocus, or an upscaled small image);
  a collage's sharp subject before a blurred background counts as sharp, as in a photo
- noise: std at mid-gray / 30 (0..255 scale; Gaussian per channel or luma, constant or shot-like)
- jpeg: (92 - quality) / 87, quality 5..87
- color_cast: largest channel-gain deviation / 0.4 (white-balance style gains, random hue)
- watermark: opacity 0.15..1 of text, logo or logo + text, anywhere, any colour, possibly tiled;
  the network is trained on its presence where it is visible (see watermark_cells), so its output
  is a probability that a mark is there, not an opacity estimate
"""
from __future__ import annotations

import importlib.util
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from curator import degrade
from scorers.degradation import HEADS

BLUR, NOISE, JPEG, CAST, MARK = (HEADS.index(h) for h in ("blur", "noise", "jpeg", "color_cast", "watermark"))
VISIBLE = 12 / 255  # a watermark pixel counts as seen once it changed a channel by this much
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

# skimage.data photos (BSD/CC0/public domain per skimage's data README) and matplotlib's
# grace_hopper.jpg (US Navy, public domain). ihc and retina are left out: their stain / fundus
# colours would teach the colour-cast head that strong casts are clean.
_SK = "skimage:data/"
TRAIN_PHOTOS = tuple(_SK + n for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                                       "camera.png", "brick.png", "grass.png", "moon.png", "coins.png")
                   ) + ("mpl:grace_hopper.jpg",)
# Held out: different skimage photos plus sample images shipped by gradio and insightface (used for
# evaluation only, never shipped or trained on). Missing files are skipped.
HELDOUT_PHOTOS = tuple(_SK + n for n in ("rocket.jpg", "gravel.png", "cell.png", "text.png")) + (
    "gradio:media_assets/images/tower.jpg", "gradio:media_assets/images/cheetah.jpg",
    "gradio:media_assets/images/groot.jpeg", "gradio:media_assets/images/lion.jpg",
    "gradio:test_data/cheetah2.jpg", "insightface:data/images/t1.jpg",
    "insightface:data/images/mask_white.jpg")
TRAIN_FAMILIES = ("shapes", "clouds", "patterns", "dead_leaves", "backdrop")
COLLAGE_SHARE = 0.5  # of the photo draws in training, the share that are collages of photo textures
HELDOUT_FAMILIES = ("landscape",)
HELDOUT_FONT_PREFIXES = ("LiberationSerif", "DejaVuSansMono")


# ---------------------------------------------------------------------------------------------
# Clean sources


def _dejpeg(rgb: np.ndarray) -> np.ndarray:
    """Halve a JPEG-compressed source with area averaging, which removes its own block artefacts
    (otherwise they would be labelled clean)."""
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def load_photo(spec: str) -> np.ndarray | None:
    """RGB uint8 for 'package:relative/path' (mpl = matplotlib's sample_data); None if absent."""
    package, rel = spec.split(":", 1)
    mod = {"mpl": "matplotlib"}.get(package, package)
    try:
        found = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        return None
    if found is None or found.origin is None:
        return None
    root = Path(found.origin).parent
    path = root / "mpl-data" / "sample_data" / rel if mod == "matplotlib" else root / rel
    return load_file(path) if path.is_file() else None


def load_file(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
            fmt = im.format
    except OSError:
        return None
    return _dejpeg(rgb) if fmt == "JPEG" else rgb


def folder_photos(folder: Path, min_side: int) -> list[np.ndarray]:
    """Every readable image under `folder` whose shorter side is at least `min_side` (smaller ones
    would have to be enlarged, which blurs them), for retraining on a user's own clean images."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and (rgb := load_file(p)) is not None and min(rgb.shape[:2]) >= min_side:
            out.append(rgb)
    return out


def split_fonts(split: str) -> tuple[Path | None, ...]:
    """Fonts for watermarks of a split; (None,) means Pillow's default font where none are found."""
    fonts = degrade.font_files()
    held = tuple(f for f in fonts if f.name.startswith(HELDOUT_FONT_PREFIXES))
    train = tuple(f for f in fonts if f not in held)
    chosen = held if split == "heldout" else train
    return chosen or fonts or (None,)


# ---------------------------------------------------------------------------------------------
# Procedural clean images: rendered at 2x and area-reduced so edges are anti-aliased like a photo.


def _fractal(rng: np.random.Generator, h: int, w: int, octaves: int = 5, decay: float = 0.55) -> np.ndarray:
    """Smooth 1/f-like field in 0..1: octaves of random grids, summed at low resolution (the field
    has no detail finer than its top octave) and enlarged once."""
    sh, sw = max(1, min(h, 160)), max(1, min(w, 160))
    out = np.zeros((sh, sw), np.float32)
    amp = 1.0
    for k in range(octaves):
        g = 2 ** (k + 1) + 1
        field = rng.standard_normal((g, g)).astype(np.float32)
        out += amp * cv2.resize(field, (sw, sh), interpolation=cv2.INTER_CUBIC)
        amp *= decay
    out -= out.min()
    out /= max(float(out.max()), 1e-6)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def _palette(rng: np.random.Generator, n: int = 3) -> np.ndarray:
    return rng.uniform(0, 255, (n, 3)).astype(np.float32)


def _colormap(t: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """Map t in 0..1 through a piecewise-linear palette (a 256-entry lookup table: fast)."""
    grid = np.linspace(0.0, 1.0, 256)
    stops = np.linspace(0.0, 1.0, len(pal))
    lut = np.stack([np.interp(grid, stops, pal[:, c]) for c in range(3)], axis=1)
    idx = np.clip(t * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(cv2.merge([idx, idx, idx]), lut.reshape(1, 256, 3).astype(np.uint8)).astype(np.float32)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = np.ogrid[:h, :w]
    t = (np.float32(np.cos(a) / w) * xx.astype(np.float32) + np.float32(np.sin(a) / h) * yy.astype(np.float32))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return _colormap(t, _palette(rng, 2))


def _shapes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    im = Image.fromarray(_gradient(rng, h, w).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(4, 30))):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        s = rng.uniform(0.05, 0.5) * min(h, w)
        box = (x0, y0, x0 + s * rng.uniform(0.5, 2), y0 + s * rng.uniform(0.5, 2))
        kind = rng.integers(4)
        if kind == 0:
            draw.ellipse(box, fill=c)
        elif kind == 1:
            draw.rectangle(box, fill=c)
        elif kind == 2:
            pts = [(x0 + rng.uniform(-s, s), y0 + rng.uniform(-s, s)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=c)
        else:
            draw.line(box, fill=c, width=int(rng.integers(2, 12)))
    shade = 0.7 + 0.5 * _fractal(rng, h, w, octaves=2)[..., None]
    return np.asarray(im, np.float32) * shade


def _clouds(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return _colormap(_fractal(rng, h, w, octaves=int(rng.integers(4, 7))), _palette(rng, int(rng.integers(2, 5))))


def _patterns(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = (g.astype(np.float32) for g in np.ogrid[:h, :w])
    c, s = np.float32(np.cos(a := rng.uniform(0, np.pi))), np.float32(np.sin(a))
    u, v = c * xx + s * yy, c * yy - s * xx
    period = rng.uniform(8, 80)
    kind = rng.integers(3)
    if kind == 0:
        t = (np.floor(u / period) % 2).astype(np.float32)
    elif kind == 1:
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = (np.floor(np.hypot(xx - cx, yy - cy) / period) % 2).astype(np.float32)
    base = _colormap(t, _palette(rng, 2))
    return base * (0.6 + 0.6 * _fractal(rng, h, w, octaves=2)[..., None])


def _landscape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    sky = _colormap(np.linspace(0, 1, h, dtype=np.float32)[:, None].repeat(w, 1), _palette(rng, 2))
    im = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    r = rng.uniform(0.03, 0.1) * h
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.4) * h
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers(180, 256, 3)))
    layers = int(rng.integers(2, 5))
    for k in range(layers):
        base = h * (0.35 + 0.5 * (k + 1) / (layers + 1))
        profile = (_fractal(rng, 1, w, octaves=4)[0] - 0.5) * h * rng.uniform(0.1, 0.4) + base
        pts = [(0, h)] + [(x, float(profile[x])) for x in range(0, w, 2)] + [(w, h)]
        draw.polygon(pts, fill=tuple(int(v) for v in rng.integers(0, 200, 3)))
    return np.asarray(im, np.float32)


def _object_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Mostly near-white or near-black, the colours watermarks favour, so the network learns that a
    plain white or black object is not by itself a mark; otherwise any colour."""
    r = rng.random()
    if r < 0.4:
        return tuple(int(v) for v in rng.integers(190, 256, 3))  # type: ignore[return-value]
    if r < 0.6:
        return tuple(int(v) for v in rng.integers(0, 50, 3))  # type: ignore[return-value]
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _convex_polygon(draw: ImageDraw.ImageDraw, rng: np.random.Generator, cx: float, cy: float, r: float,
                    max_vertices: int, fill: int | tuple[int, ...]) -> None:
    """A random convex polygon inscribed in the circle (cx, cy, r): 3 to max_vertices - 1 vertices at
    sorted random angles."""
    t = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, max_vertices))))
    draw.polygon([(cx + r * np.cos(v), cy + r * np.sin(v)) for v in t], fill=fill)


def _backdrop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A few plain objects on a plain backdrop: a product on a seamless wall, a moon or a lamp, a
    ball, a character on a flat background. Every other family is busy, so the network had learned
    that a lone flat bright shape on a smooth background is an overlaid logo (degradation-v3 gave a
    bright disc on a gradient a median watermark score of 0.46); here such shapes are clean. Only
    shapes no logo or letter has (discs, ellipses, rounded rectangles, convex polygons), sometimes
    with a soft glow, so marks stay marks."""
    kind = rng.integers(3)
    if kind == 0:
        base = _gradient(rng, h, w)
    elif kind == 1:
        base = np.broadcast_to(_palette(rng, 1)[0], (h, w, 3)).copy()
    else:
        base = _clouds(rng, h, w)
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    glow = Image.new("L", (w, h), 0)
    glow_draw = ImageDraw.Draw(glow)
    for _ in range(int(rng.integers(1, 5))):
        fill = _object_colour(rng)
        r = rng.uniform(0.02, 0.15) * min(h, w)
        cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
        shape = rng.integers(4)  # disc, ellipse, rounded rectangle, convex polygon
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape in (1, 2):
            aspect = rng.uniform(0.3, 1.0 if shape == 1 else 1.5)
            box = (cx - r, cy - r * aspect, cx + r, cy + r * aspect)
        if shape in (0, 1):
            draw.ellipse(box, fill=fill)
        elif shape == 2:
            draw.rounded_rectangle(box, radius=r * rng.uniform(0.0, 0.5), fill=fill)
        else:
            _convex_polygon(draw, rng, cx, cy, r, 8, fill)
        if min(fill) > 190 and rng.random() < 0.3:  # a bright light's halo
            glow_draw.ellipse(box, fill=255)
    out = np.asarray(im, np.float32)
    if glow.getbbox() is not None:
        halo = cv2.GaussianBlur(np.asarray(glow, np.float32) / 255, (0, 0), float(rng.uniform(0.01, 0.05) * min(h, w)))
        out = out + halo[..., None] * np.float32(rng.uniform(60, 200))
    if rng.random() < 0.5:  # uneven light
        out = out * (0.8 + 0.4 * _fractal(rng, h, w, octaves=2)[..., None])
    return out


def _leaf_radii(rng: np.random.Generator, r_min: float, r_max: float, area: int, cap: int) -> np.ndarray:
    """Radii drawn from p(r) ~ r^-3 on [r_min, r_max], as many as cover `area` about three layers
    deep (at most `cap`)."""
    mean_r2 = 2 * np.log(r_max / r_min) / (r_min ** -2 - r_max ** -2)  # E[r^2] under p(r) ~ r^-3
    n = min(cap, int(3 * area / (np.pi * mean_r2)))
    return (r_min ** -2 - rng.random(n) * (r_min ** -2 - r_max ** -2)) ** -0.5


def _dead_leaves(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The dead-leaves model: opaque shapes with sizes drawn from p(r) ~ r^-3, stacked until the
    canvas is covered. Its occlusions, edges and scale-invariance mimic natural photos' statistics
    (it is a standard stand-in for them), so it gives the network many more kinds of clean
    structure to tell apart from an overlaid watermark than ten photos can."""
    pal = _palette(rng, int(rng.integers(3, 7)))
    im = Image.new("RGB", (w, h), tuple(int(v) for v in pal[0]))
    draw = ImageDraw.Draw(im)
    r_min, r_max = rng.uniform(0.006, 0.015) * min(h, w), rng.uniform(0.1, 0.35) * min(h, w)
    radii = _leaf_radii(rng, r_min, r_max, h * w, 8000)
    n = len(radii)
    centres = rng.uniform(-0.1, 1.1, (n, 2)) * (w, h)
    colours = np.clip(pal[rng.integers(len(pal), size=n)] + rng.normal(0, 25, (n, 3)), 0, 255).astype(int)
    kinds = rng.integers(3, size=n)
    for (cx, cy), r, c, kind in zip(centres, radii, colours, kinds):
        fill = tuple(int(v) for v in c)
        if kind == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif kind == 1:
            a = rng.uniform(0.4, 1.0)
            draw.ellipse((cx - r, cy - r * a, cx + r, cy + r * a), fill=fill)
        else:
            _convex_polygon(draw, rng, cx, cy, r, 7, fill)
    shade = 0.75 + 0.4 * _fractal(rng, h, w, octaves=3)[..., None]
    out = np.asarray(im, np.float32) * shade
    return cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.5)))


def _texture_layer(photo: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An h x w texture from a photo (uint8): a region of random scale area-reduced to the canvas
    (enlarged only when the photo is smaller than it), turned by a multiple of 90 degrees, channels
    possibly permuted (grays stay gray, so no colour cast is introduced)."""
    turns = int(rng.integers(4))
    th, tw = (h, w) if turns % 2 == 0 else (w, h)  # the canvas in the photo's own orientation
    ph, pw = photo.shape[:2]
    fit = min(ph / th, pw / tw)
    zoom = float(np.exp(rng.uniform(0.0, np.log(fit)))) if fit > 1 else fit
    rh, rw = max(1, int(th * zoom)), max(1, int(tw * zoom))
    y, x = int(rng.integers(0, ph - rh + 1)), int(rng.integers(0, pw - rw + 1))
    shrink = cv2.INTER_AREA if zoom >= 1 else cv2.INTER_CUBIC
    layer = cv2.resize(photo[y:y + rh, x:x + rw], (tw, th), interpolation=shrink)
    layer = np.rot90(layer, turns)
    if rng.random() < 0.5:
        layer = layer[..., rng.permutation(3)]
    return np.ascontiguousarray(layer)


def _soften(layer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A strongly blurred background: defocus (Gaussian) or panning (motion along a line)."""
    if rng.random() < 0.5:
        return cv2.GaussianBlur(layer, (0, 0), float(rng.uniform(2.0, 8.0)))
    return degrade.motion_blur(layer, int(rng.integers(8, 41)), float(rng.uniform(0, 180)))


def collage(photos: Sequence[np.ndarray], rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Dead leaves cut from photo textures: shapes (sizes ~ r^-3, as in _dead_leaves) each filled
    with one of a few texture layers taken from the training photos at random scales, turns and
    channel orders. Ten photos show only ten arrangements of their textures; a collage puts fur,
    grass, brick, hair and fabric next to each other in endless new ones, so the network sees far
    more kinds of clean, detailed structure to tell apart from an overlaid mark. Half the time the
    bottom layer is blurred and shows through: a sharp subject before a defocused or panned
    background, which a network that has only seen uniformly sharp clean images takes for an
    overlaid logo. Shape edges are drawn at 2x and area-reduced, anti-aliased like a photo's."""
    k = int(rng.integers(3, 7))
    layers = [_texture_layer(photos[int(rng.integers(len(photos)))], rng, h, w) for _ in range(k)]
    gains = rng.uniform(0.6, 1.25, k)  # brightness of each layer
    soft = rng.random() < 0.5
    if soft:  # sharp subjects in front of a soft background, as with depth of field or panning
        layers[0] = _soften(layers[0], rng)
    index = Image.new("L", (2 * w, 2 * h), 0)
    draw = ImageDraw.Draw(index)
    side = 2 * min(h, w)
    if soft:  # a few large subjects, the background showing around them
        radii = rng.uniform(0.12, 0.4, int(rng.integers(1, 5))) * side
    else:     # covered about three layers deep, as in _dead_leaves
        radii = _leaf_radii(rng, rng.uniform(0.03, 0.08) * side, rng.uniform(0.25, 0.6) * side, 4 * h * w, 400)
    centres = rng.uniform(-0.1, 1.1, (len(radii), 2)) * (2 * w, 2 * h)
    for (cx, cy), r in zip(centres, radii):
        fill = int(rng.integers(1, k)) if soft else int(rng.integers(k))
        if rng.random() < 0.5:
            a = rng.uniform(0.4, 1.0)
            draw.ellipse((cx - r, cy - r * a, cx + r, cy + r * a), fill=fill)
        else:
            _convex_polygon(draw, rng, cx, cy, r, 7, fill)
    idx = np.asarray(index)
    out = np.zeros((h, w, 3), np.float32)
    for i, layer in enumerate(layers):  # each layer's coverage (0..255 after the 2x area-reduction) x gain
        cover = cv2.resize(cv2.compare(idx, i, cv2.CMP_EQ), (w, h), interpolation=cv2.INTER_AREA)
        out += (cover * np.float32(gains[i] / 255))[..., None] * layer
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


FAMILIES: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "shapes": _shapes, "clouds": _clouds, "patterns": _patterns, "dead_leaves": _dead_leaves,
    "backdrop": _backdrop, "landscape": _landscape,
}


def procedural(family: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A clean, noise-free image of a family, rendered at 2x then area-reduced to (h, w)."""
    big = FAMILIES[family](rng, 2 * h, 2 * w)
    small = cv2.resize(np.clip(big, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA)
    return small


# ---------------------------------------------------------------------------------------------
# Canvases: a clean image at the resolution the network sees.


@dataclass
class CleanPool:
    """Clean photos and procedural families to draw canvases from."""

    photos: list[np.ndarray]
    families: Sequence[str]
    photo_share: float = 0.6
    names: Sequence[str] = ()  # one per photo, for reports; "photo <i>" where not given
    collage_share: float = 0.0  # of the photo draws, the share that are collages of them (see collage)

    @classmethod
    def builtin(cls, split: str, extra: Sequence[np.ndarray] = (), use_builtin_photos: bool = True) -> CleanPool:
        train = split == "train"
        specs = (TRAIN_PHOTOS if train else HELDOUT_PHOTOS) if use_builtin_photos else ()
        found = [(s.rsplit("/", 1)[-1], p) for s, p in ((s, load_photo(s)) for s in specs) if p is not None]
        return cls([p for _, p in found] + list(extra), TRAIN_FAMILIES if train else HELDOUT_FAMILIES,
                   names=[n for n, _ in found], collage_share=COLLAGE_SHARE if train else 0.0)

    def canvas(self, rng: np.random.Generator, long_side: int, min_short: int = 0) -> np.ndarray:
        """A clean image with its longer side at most `long_side`, never upscaled."""
        return self.draw(rng, long_side, min_short)[0]

    def draw(self, rng: np.random.Generator, long_side: int, min_short: int = 0) -> tuple[np.ndarray, str]:
        """canvas() and the name of its source (a photo's, "collage", or the procedural family's)."""
        if self.photos and (not self.families or rng.random() < self.photo_share):
            if self.collage_share and rng.random() < self.collage_share:
                source, img = "collage", collage(self.photos, rng, *_canvas_shape(rng, long_side, min_short))
            else:
                i = int(rng.integers(len(self.photos)))
                source = self.names[i] if i < len(self.names) else f"photo {i}"
                img = _crop_photo(self.photos[i], rng, long_side, min_short)
        else:
            h, w = _canvas_shape(rng, long_side, min_short)
            source = self.families[int(rng.integers(len(self.families)))]
            img = procedural(source, rng, h, w)
            # Real photos are never perfectly flat; a trace of grain keeps "noise-free" honest.
            img = add_noise(img, float(rng.uniform(0, 1.0)), rng, chroma=True)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        return _photometric(np.ascontiguousarray(img), rng), source


def _canvas_shape(rng: np.random.Generator, long_side: int, min_short: int) -> tuple[int, int]:
    """(h, w) of a generated canvas: a common aspect ratio, landscape 60% of the time."""
    aspect = rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9])
    short = max(min_short, round(long_side / aspect))
    return (short, long_side) if rng.random() < 0.6 else (long_side, short)


def _crop_photo(photo: np.ndarray, rng: np.random.Generator, long_side: int, min_short: int) -> np.ndarray:
    ph, pw = photo.shape[:2]
    landscape = pw >= ph if rng.random() < 0.8 else pw < ph
    aspect = float(rng.uniform(1.0, 1.8))
    if min_short:  # keep the region's shorter side reachable at min_short
        aspect = max(1.0, min(aspect, (pw if landscape else ph) / min_short))
    rh, rw = (1.0, aspect) if landscape else (aspect, 1.0)
    fit = min(ph / rh, pw / rw)                      # largest region of this aspect inside the photo
    unit = fit * rng.uniform(0.45, 1.0)
    unit = max(unit, min_short, long_side / aspect)  # never smaller than the canvas (no upscaling)
    unit = min(unit, fit)
    h, w = max(1, int(unit * rh)), max(1, int(unit * rw))
    y, x = int(rng.integers(0, ph - h + 1)), int(rng.integers(0, pw - w + 1))
    region = photo[y:y + h, x:x + w]
    scale = min(1.0, long_side / max(h, w))
    if min_short:
        scale = max(scale, min(1.0, min_short / min(h, w)))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(region, size, interpolation=cv2.INTER_AREA) if scale < 1 else region.copy()


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild gamma and saturation changes that are not defects (hue untouched: that is a cast)."""
    gamma = np.clip((np.arange(256) / 255.0) ** rng.uniform(0.8, 1.25) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    f = cv2.LUT(img, gamma).astype(np.float32)
    gray = f.mean(axis=2, keepdims=True)
    f = gray + (f - gray) * np.float32(rng.uniform(0.7, 1.3))
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Random degradations with labels


_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "to", "shu", "pix", "el", "na", "dor", "qui", "sta", "fo", "ly")


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))


def random_text(rng: np.random.Generator) -> str:
    """A watermark-like string: brand, credit, URL, handle, ID or a stock word."""
    w, w2 = _word(rng), _word(rng)
    digits = "".join(rng.choice(list(string.digits), size=int(rng.integers(4, 10))))
    templates = (f"© {w.title()} {w2.title()}", f"{w.upper()} STOCK", f"www.{w}{w2}.com", f"@{w}_{w2}",
                 f"{w.upper()} PHOTOGRAPHY", "PREVIEW", "SAMPLE", f"{w.title()} {int(rng.integers(1990, 2030))}",
                 f"Image ID {digits}", f"{w}{w2}.net", f"© {int(rng.integers(1990, 2030))} {w.title()}",
                 "DO NOT COPY", f"{w.title()}Images")
    text = str(templates[int(rng.integers(len(templates)))])
    return text.upper() if rng.random() < 0.2 else text


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    r = rng.random()
    if r < 0.45:
        return (255, 255, 255)
    if r < 0.65:
        return (0, 0, 0)
    if r < 0.8:
        g = int(rng.integers(60, 200))
        return (g, g, g)
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _position(rng: np.random.Generator) -> tuple[float, float]:
    r = rng.random()
    if r < 0.5:  # a corner or edge, where credits usually sit
        edge = lambda: float(rng.uniform(0.0, 0.08) if rng.random() < 0.5 else rng.uniform(0.92, 1.0))  # noqa: E731
        return (edge(), edge()) if rng.random() < 0.7 else (float(rng.uniform(0, 1)), edge())
    if r < 0.7:
        return (float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6)))
    return (float(rng.uniform(0, 1)), float(rng.uniform(0, 1)))


def random_watermark_alpha(shape: tuple[int, int], rng: np.random.Generator,
                           fonts: Sequence[Path | None]) -> tuple[np.ndarray, str]:
    """(coverage 0..1, kind) of a random watermark: text alone (60%), a logo with text (15%) or a
    logo alone (25%); the kind names which ("text", "tiled text", "logo", "logo + text",
    "logo + tiled text"), so the benchmark can say which marks are missed."""
    font = fonts[int(rng.integers(len(fonts)))]
    angle = float(rng.uniform(-45, 45)) if rng.random() < 0.35 else 0.0
    kind = rng.random()
    alpha = np.zeros(shape, np.float32)
    parts = []
    if kind < 0.75:
        tiled = rng.random() < 0.25
        parts.append("tiled text" if tiled else "text")
        scale = float(np.exp(rng.uniform(np.log(0.03), np.log(0.08 if tiled else 0.16))))
        alpha = degrade.text_alpha(shape, random_text(rng), scale, _position(rng), angle, font, tiled)
    if kind >= 0.6:
        scale = float(rng.uniform(0.08, 0.35))
        alpha = np.maximum(alpha, degrade.logo_alpha(shape, rng, scale, _position(rng), angle, font))
        parts.insert(0, "logo")
    return alpha, " + ".join(parts)


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator, chroma: bool = True,
              shot: bool = False) -> np.ndarray:
    """Additive Gaussian noise (float32, several times faster than curator.degrade's float64 version,
    which matters when generating data on the fly). With `shot`, the std scales with
    sqrt(intensity) and equals `sigma` at mid-gray: the Gaussian approximation of Poisson noise."""
    f = img.astype(np.float32)
    n = rng.standard_normal(f.shape if chroma else f.shape[:2] + (1,), dtype=np.float32) * np.float32(sigma)
    if shot:
        n = n * np.sqrt(f / 127.5)
    return np.clip(f + n + 0.5, 0, 255).astype(np.uint8)


def degrade_random(img: np.ndarray, rng: np.random.Generator, fonts: Sequence[Path | None],
                   p_clean: float = 0.2, p_head: float = 0.4,
                   only: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str | None]:
    """Apply a random combination of defects; return (image, labels per HEADS, watermark change,
    watermark kind): the change is how much the watermark altered each pixel (0..1, before JPEG),
    the kind is random_watermark_alpha's; both None without a watermark.

    Order follows a photo's life: white balance, optics / motion, sensor noise, a watermark added
    later, JPEG on saving. Exposure / contrast changes are applied as nuisances with no label, so
    the heads learn not to confuse them with the defects. `only` restricts which heads may fire.
    """
    labels = np.zeros(len(HEADS), np.float32)
    allowed = np.array([only is None or h in only for h in HEADS])
    if rng.random() < p_clean:
        return img, labels, None, None
    present = (rng.random(len(HEADS)) < p_head) & allowed
    if not present.any():
        present[rng.choice(np.flatnonzero(allowed))] = True
    out = img
    if rng.random() < 0.2:
        out = (degrade.exposure(out, float(rng.uniform(-1.5, 1.0))) if rng.random() < 0.6
               else degrade.low_contrast(out, float(rng.uniform(0.5, 0.9))))
    if present[CAST]:
        labels[CAST] = rng.uniform(0.1, 1.0)
        t = rng.standard_normal(3)
        t -= t.mean()
        t /= max(float(np.abs(t).max()), 1e-6)
        out = degrade.color_cast(out, tuple(1.0 + t), 0.4 * float(labels[CAST]))
    if present[BLUR]:
        labels[BLUR] = rng.uniform(0.12, 1.0)
        sigma = 4.0 * float(labels[BLUR])
        kind = rng.integers(4)
        if kind == 0:
            out = degrade.gaussian_blur(out, sigma)
        elif kind == 1:
            out = degrade.motion_blur(out, max(2, round(sigma * 12 ** 0.5)), float(rng.uniform(0, 180)))
        elif kind == 2:
            out = degrade.defocus_blur(out, 2.0 * sigma)
        else:
            out = degrade.down_up(out, max(1.3, sigma / 0.45))
    if present[NOISE]:
        labels[NOISE] = rng.uniform(0.1, 1.0)
        sigma = 30.0 * float(labels[NOISE])
        kind = rng.random()
        out = add_noise(out, sigma, rng, chroma=kind < 0.65, shot=kind >= 0.4)
    change = mark = None
    if present[MARK]:
        alpha, kind_of_mark = random_watermark_alpha(out.shape[:2], rng, fonts)
        if alpha.sum() >= 20:  # else drawn entirely off-canvas: no watermark after all
            mark = kind_of_mark
            labels[MARK] = rng.uniform(0.15, 1.0)
            before = out
            out = degrade.blend_overlay(out, alpha, _color(rng), float(labels[MARK]))
            diff = cv2.absdiff(out, before)  # with the channels' max by hand, 5x faster than numpy's abs + max(axis=2)
            change = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]).astype(np.float32) / 255.0
    if present[JPEG]:
        quality = round(92 - 87 * float(np.float32(rng.uniform(0.06, 1.0))))
        labels[JPEG] = (92 - quality) / 87  # the label of the integer quality actually used
        out = degrade.jpeg(out, quality)
    return out, labels, change, mark


@dataclass
class Example:
    """One training crop: image, per-head labels and which of them count, and the watermark map's
    per-cell targets and which cells count."""

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    cells: np.ndarray
    cell_mask: np.ndarray


def watermark_cells(change: np.ndarray | None, size: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell targets of the watermark map for a size x size crop of a watermark's `change` map:
    1 where the mark visibly altered a pixel of the cell (by VISIBLE or more), 0 where it altered
    none, and masked out where it only faintly touched the cell (an anti-aliased fringe, or a mark
    the same colour as the background there). Presence, not opacity: a faint mark is still a mark,
    and a target of 0.15 for one would teach the map that it looks almost clean."""
    n = -(-size // cell)
    if change is None:
        return np.zeros((n, n), np.float32), np.ones((n, n), np.float32)
    padded = np.zeros((n * cell, n * cell), np.float32)
    padded[:size, :size] = change
    peak = padded.reshape(n, cell, n, cell).max(axis=(1, 3))
    visible = peak >= VISIBLE
    return visible.astype(np.float32), ((peak == 0) | visible).astype(np.float32)


def crop_example(img: np.ndarray, labels: np.ndarray, change: np.ndarray | None, rng: np.random.Generator,
                 size: int, cell: int = 16) -> Example:
    """A size x size crop with its labels and watermark cell targets.

    Blur, noise, JPEG and cast cover the whole image; the watermark may not. The crop is the best of
    three positions by watermark change. Its image-level watermark label is presence, like the
    cells': 1 if a cell shows the mark, 0 if the mark altered nothing in the crop, and masked out of
    the loss if it altered only a fringe."""
    h, w = img.shape[:2]
    cands = [(int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))) for _ in range(3)]
    y, x = cands[0]
    if change is not None:
        y, x = cands[int(np.argmax([float(change[y:y + size, x:x + size].sum()) for y, x in cands]))]
        change = change[y:y + size, x:x + size]
    cells, cell_mask = watermark_cells(change, size, cell)
    labels, mask = labels.copy(), np.ones(len(HEADS), np.float32)
    if cells.any():
        labels[MARK] = 1.0
    elif cell_mask.all():  # the mark altered nothing in the crop
        labels[MARK] = 0.0
    else:                  # only a fringe of it: unsure
        mask[MARK] = 0.0
    return Example(np.ascontiguousarray(img[y:y + size, x:x + size]), labels, mask, cells, cell_mask)
