"""Export the chosen images as a LoRA training folder that kohya sd-scripts, OneTrainer and ai-toolkit
load unchanged.

Layout of OUT:
    <repeats>_<trigger> <class>/     kohya folder naming (or, with layout "flat", the files in OUT)
        name.jpg  name.txt           image and caption sidecar (trigger word first)
    dataset.toml                     for kohya's --dataset_config mode, which ignores folder names and
                                     defaults to ".caption" captions, so repeats, class tokens and the
                                     caption extension are written out explicitly
    manifest.csv, scores.parquet     source path, exported path, sha256, decision, every metric
    .curator-export.json             the files this export wrote (so a re-export can tidy up after itself)

What it guarantees, and how:
- Sources are only read. Images are copied byte for byte by default (`link` makes hard links; a file
  is always replaced by a new inode, never written in place, so a link can never alter its source).
  Re-encoding happens only when asked (resize / crop), for formats trainers may not read (`convert`),
  and for JPEGs whose EXIF orientation kohya would ignore (`bake_orientation`).
- Nothing is written outside OUT: OUT is resolved once, every name is checked to be one plain path
  component, and no symlink inside OUT is ever followed (the export stops instead).
- OUT must be empty or an earlier Curator export; a file in it that Curator did not write is never
  overwritten or removed. Re-exporting the same inputs rewrites nothing (files whose bytes already
  match are left alone, mtimes included); files an earlier export wrote that no longer belong are
  removed, unless someone edited them since.
- Names are deterministic: a file keeps its source's name; names that clash (case-insensitively, as
  they would on Windows or macOS) get a suffix from a hash of their source path, so adding or
  removing other images never renames them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import string
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

import duckdb
import numpy as np
import pandas as pd
from PIL import Image

from curator.decode import DecodeError, decode
from storage.db import get_meta
from storage.ranking import ranked, saved_weights
from storage.selection import accepted_ids, image_files

STATE_FILE = ".curator-export.json"
TRAINER_EXTENSIONS = (".jpg", ".jpeg", ".png")   # what all three trainers read (older ai-toolkit: only these)
LAYOUTS = ("kohya", "flat")
CROPS = ("none", "center", "face")
CONVERSIONS = ("png", "jpg", "keep")
TEMPLATE_FIELDS = ("trigger", "class", "caption", "name")
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ExportError(RuntimeError):
    """The export cannot be done as asked; nothing unsafe was written. The message says why."""


@dataclass
class ExportOptions:
    layout: str = "kohya"                 # kohya | flat
    trigger: str = ""                     # e.g. "ohwx": first word of every caption
    class_token: str = ""                 # e.g. "woman"
    repeats: int = 10
    caption_template: str = "{caption}"   # fields: {trigger} {class} {caption} (the carried-over one) {name}
    caption_extension: str = ".txt"
    carry_captions: bool = True           # read name.txt / name.caption next to each source
    resize: int | None = None             # longest side (crop none) or square side; never upscales
    crop: str = "none"                    # none | center | face (square crop)
    convert: str = "png"                  # target for sources that are not jpg/jpeg/png; "keep" copies them
    jpeg_quality: int = 95
    bake_orientation: bool = True         # re-encode JPEGs carrying an EXIF rotation (kohya ignores it)
    link: bool = False                    # hard links instead of copies (same filesystem only)
    train_resolution: int = 1024          # dataset.toml resolution
    relative_paths: bool = False          # dataset.toml image_dir relative to OUT (for a zip or a moved folder)
    weights: Mapping[str, float] | None = None   # ensemble weights for the manifest (default: saved ones)

    @property
    def class_tokens(self) -> str:
        return " ".join(t for t in (self.trigger.strip(), self.class_token.strip()) if t)

    @property
    def image_dir(self) -> str:
        """The folder (relative to OUT) the images go into; '' for the flat layout."""
        return f"{self.repeats}_{self.class_tokens}" if self.layout == "kohya" else ""

    def validate(self) -> None:
        if self.layout not in LAYOUTS:
            raise ExportError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.crop not in CROPS:
            raise ExportError(f"crop must be one of {', '.join(CROPS)}, not {self.crop!r}")
        if self.convert not in CONVERSIONS:
            raise ExportError(f"convert must be one of {', '.join(CONVERSIONS)}, not {self.convert!r}")
        if self.repeats < 1:
            raise ExportError(f"repeats must be at least 1, not {self.repeats}")
        for what, value in (("trigger", self.trigger), ("class token", self.class_token)):
            if _UNSAFE_CHARS.search(value) or ".." in value:
                raise ExportError(f"{what} {value!r} contains characters not allowed in a folder name")
        if self.layout == "kohya":
            if not self.class_tokens:
                raise ExportError("the kohya layout names its folder '<repeats>_<trigger> <class>': give a "
                                  "trigger word or a class token, or use the flat layout")
            _component(self.image_dir, "folder name")
        if not re.fullmatch(r"\.[A-Za-z0-9_-]{1,16}", self.caption_extension or ""):
            raise ExportError(f"caption extension must look like '.txt', not {self.caption_extension!r}")
        if self.caption_extension.lower() in (*TRAINER_EXTENSIONS, ".toml", ".csv", ".parquet", ".json"):
            raise ExportError(f"caption extension {self.caption_extension!r} would clash with other files")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.caption_template) if f is not None}
        except ValueError as e:
            raise ExportError(f"caption template {self.caption_template!r}: {e}") from None
        unknown = fields - set(TEMPLATE_FIELDS)
        if unknown:
            raise ExportError(f"caption template uses unknown field(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
        if self.resize is not None and self.resize < 64:
            raise ExportError(f"resize must be at least 64 pixels, not {self.resize}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ExportError(f"JPEG quality must be 1..100, not {self.jpeg_quality}")
        if self.train_resolution < 64 or self.train_resolution % 64:
            raise ExportError(f"training resolution must be a multiple of 64, not {self.train_resolution}")


@dataclass
class ExportReport:
    out: Path
    image_dir: Path
    images: int = 0
    written: list[str] = field(default_factory=list)     # files created or replaced (relative to OUT)
    unchanged: int = 0                                   # files already identical, left alone
    removed: list[str] = field(default_factory=list)     # files an earlier export wrote that no longer belong
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"exported {self.images} images to {self.image_dir}: {len(self.written)} files written, "
                f"{self.unchanged} unchanged, {len(self.removed)} removed")


# -- names and safety ------------------------------------------------------------------------------

def _component(name: str, what: str) -> str:
    """`name` if it is one plain path component that stays where it is put, else ExportError."""
    if (not name or name in (".", "..") or _UNSAFE_CHARS.search(name) or name != name.strip()
            or name.endswith(".")):
        raise ExportError(f"unsafe {what} {name!r}")
    return name


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def safe_stem(name: str) -> str:
    """A file stem every trainer and file system accepts, kept as close to `name` as possible.

    Leading dots go (ai-toolkit skips hidden files), unsafe characters become '_'."""
    stem = _UNSAFE_CHARS.sub("_", name).strip().lstrip(".").rstrip(". ") or "image"
    if stem.lower() in _WINDOWS_RESERVED:
        stem += "_"
    return stem[:150]


def unique_stems(sources: list[str]) -> dict[str, str]:
    """source path -> stem, unique case-insensitively; clashing names all get a path-hash suffix."""
    stems = {s: safe_stem(PurePosixPath(s).stem) for s in sources}
    groups: dict[str, list[str]] = {}
    for s, stem in stems.items():
        groups.setdefault(stem.casefold(), []).append(s)
    taken = {k for k, g in groups.items() if len(g) == 1}
    for group in groups.values():
        if len(group) == 1:
            continue
        for s in group:
            digest = hashlib.sha256(s.encode()).hexdigest()
            n = 8
            while f"{stems[s]}_{digest[:n]}".casefold() in taken:
                n += 4
            stems[s] = f"{stems[s]}_{digest[:n]}"
            taken.add(stems[s].casefold())
    return stems


class _Out:
    """Every write of an export goes through here, so none can land outside OUT or follow a symlink."""

    def __init__(self, out: Path) -> None:
        self.root = os.path.realpath(out)

    def path(self, rel: str) -> Path:
        parts = rel.split("/")
        for part in parts:
            _component(part, "path component")
        current = self.root
        for part in parts:
            current = os.path.join(current, part)
            if os.path.islink(current):
                raise ExportError(f"{current} is a symlink; an export never follows symlinks inside OUT")
        if not _inside(os.path.realpath(current), self.root):
            raise ExportError(f"{rel!r} would leave {self.root}")
        return Path(current)

    def read(self, rel: str) -> bytes | None:
        p = self.path(rel)
        if not p.exists():
            return None
        if not p.is_file():
            raise ExportError(f"{p} exists and is not a file")
        return p.read_bytes()

    def write(self, rel: str, data: bytes) -> bool:
        """Write `data` unless the file already holds exactly it; True if written."""
        if self.read(rel) == data:
            return False
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path(rel)  # re-check: the folders now exist, none may be a symlink
        tmp = target.with_name(f".{target.name}.{os.getpid()}.curator-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def link(self, rel: str, source: Path) -> bool:
        """Make `rel` a hard link to `source` unless it already is one; True if (re)made."""
        target = self.path(rel)
        if target.is_file() and os.path.samefile(target, source):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path(rel)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.curator-tmp")
        os.link(source, tmp)
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def remove(self, rel: str) -> None:
        p = self.path(rel)
        p.unlink()
        parent = p.parent
        while str(parent) != self.root and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


# -- images ----------------------------------------------------------------------------------------

@dataclass
class _Item:
    image_id: int
    source: str          # relative to the dataset root
    stem: str
    ext: str             # of the exported file
    encode: str | None   # why the image is re-encoded, or None to copy / link the bytes
    sha256: str = ""     # of the exported bytes
    width: int | None = None
    height: int | None = None


def _exif_rotated(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format == "JPEG" and im.getexif().get(0x0112, 1) not in (1, None)
    except Exception:
        return False


def _face_centre(rgb: np.ndarray) -> tuple[float, float] | None:
    """Centre (x, y) of the largest frontal face, from scikit-image's LBP cascade (no download)."""
    import cv2
    import skimage.data
    from skimage.feature import Cascade

    h, w = rgb.shape[:2]
    scale = min(1.0, 512 / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    short = min(small.shape[:2])
    side = max(24, short // 12)
    if short < side:
        return None
    faces = Cascade(skimage.data.lbp_frontal_face_cascade_filename()).detect_multi_scale(
        img=small, scale_factor=1.2, step_ratio=1, min_size=(side, side), max_size=(short, short))
    if not faces:
        return None
    f = max(faces, key=lambda d: d["width"] * d["height"])
    return (f["c"] + f["width"] / 2) / scale, (f["r"] + f["height"] / 2) / scale


def _square(rgb: np.ndarray, centre: tuple[float, float] | None) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = min(h, w)
    cx, cy = centre if centre is not None else (w / 2, h / 2)
    x = int(round(min(max(cx - side / 2, 0), w - side)))
    y = int(round(min(max(cy - side / 2, 0), h - side)))
    return rgb[y:y + side, x:x + side]


def _encode(data: bytes, item: _Item, options: ExportOptions, warnings: list[str]) -> bytes:
    """Decode (EXIF orientation applied, alpha flattened on white), crop, resize, encode as item.ext."""
    try:
        rgb = decode(data, item.source, None).rgb
    except DecodeError as e:
        raise ExportError(f"{item.source}: {e}") from None
    if options.crop != "none":
        centre = _face_centre(rgb) if options.crop == "face" else None
        if options.crop == "face" and centre is None:
            warnings.append(f"{item.source}: no face found, centre crop used")
        rgb = _square(rgb, centre)
    img = Image.fromarray(rgb)
    if options.resize is not None and max(img.size) > options.resize:
        scale = options.resize / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    item.width, item.height = img.size
    buf = io.BytesIO()
    if item.ext == ".png":
        img.save(buf, format="PNG")
    else:
        img.save(buf, format="JPEG", quality=options.jpeg_quality, subsampling=0 if options.jpeg_quality >= 90 else 2)
    return buf.getvalue()


def _plan(rows: pd.DataFrame, options: ExportOptions) -> list[_Item]:
    stems = unique_stems(list(rows["path"]))
    items = []
    for r in rows.itertuples():
        ext = PurePosixPath(r.path).suffix.lower()
        width, height = _int(r.width), _int(r.height)
        reason = None
        if options.crop != "none":
            reason = f"{options.crop}-cropped"
        elif options.resize is not None and max(width or 0, height or 0) > options.resize:
            reason = "resized"   # images already small enough keep their bytes
        if ext not in TRAINER_EXTENSIONS and (reason or options.convert != "keep"):
            reason = reason or f"converted from {ext or 'no extension'}"
            ext = "." + (options.convert if options.convert != "keep" else "png")
        items.append(_Item(int(r.image_id), r.path, stems[r.path], ext, reason, width=width, height=height))
    return items


def _int(v) -> int | None:
    return None if v is None or v != v else int(v)


# -- captions --------------------------------------------------------------------------------------

def _existing_caption(source: Path, root: str, options: ExportOptions) -> str:
    if not options.carry_captions:
        return ""
    for ext in dict.fromkeys((options.caption_extension, ".txt", ".caption")):
        p = source.with_name(source.stem + ext)
        if p.is_file() and _inside(os.path.realpath(p), root):
            return p.read_text(encoding="utf-8", errors="replace")
    return ""


def caption(options: ExportOptions, existing: str, name: str) -> str:
    """Trigger word first, then the rendered template; comma-separated pieces, blank ones dropped."""
    body = options.caption_template.format_map(
        {"trigger": options.trigger.strip(), "class": options.class_token.strip(), "caption": existing, "name": name})
    pieces = [p.strip() for p in re.split(r"[,\r\n]+", body)]
    trigger = options.trigger.strip()
    pieces = [p for p in pieces if p and p != trigger]
    return ", ".join(([trigger] if trigger else []) + pieces)


# -- dataset.toml ----------------------------------------------------------------------------------

def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def dataset_toml(out: Path, options: ExportOptions) -> str:
    """kohya sd-scripts `--dataset_config` for the export (DreamBooth-style subset with captions)."""
    res = options.train_resolution
    image_dir = (PurePosixPath(options.image_dir or ".").as_posix() if options.relative_paths
                 else str(out / options.image_dir) if options.image_dir else str(out))
    where = ("relative to the folder you start training from: run it from this folder, or make it "
             "absolute" if options.relative_paths else "absolute; edit it if you move this folder")
    lines = [
        "# kohya sd-scripts dataset config written by Curator: --dataset_config dataset.toml",
        "# In this mode kohya ignores folder names and defaults to '.caption' captions, so repeats,",
        "# class tokens and the caption extension are given explicitly. OneTrainer and ai-toolkit read",
        "# the same folder directly (images with same-name .txt captions).",
        f"# image_dir is {where}.",
        "",
        "[general]",
        f"caption_extension = {_toml_str(options.caption_extension)}",
    ]
    if options.trigger.strip():
        lines.append("keep_tokens = 1  # the trigger word stays first if you turn on shuffle_caption")
    lines += [
        "",
        "[[datasets]]",
        f"resolution = {res}",
        "batch_size = 1",
        "enable_bucket = true",
        f"min_bucket_reso = {max(64, min(256, res // 2 // 64 * 64))}",
        f"max_bucket_reso = {2 * res}",
        "bucket_reso_steps = 64",
        "bucket_no_upscale = true",
        "",
        "  [[datasets.subsets]]",
        f"  image_dir = {_toml_str(image_dir)}",
        f"  num_repeats = {options.repeats}",
    ]
    if options.class_tokens:
        lines.append(f"  class_tokens = {_toml_str(options.class_tokens)}")
    lines.append(f"  caption_extension = {_toml_str(options.caption_extension)}")
    return "\n".join(lines) + "\n"


# -- the export ------------------------------------------------------------------------------------

def export(con: duckdb.DuckDBPyConnection, out: Path | str, options: ExportOptions | None = None,
           image_ids: Iterable[int] | None = None, root: Path | str | None = None) -> ExportReport:
    """Export `image_ids` (default: the accepted images) from the dataset `root` (default: the
    database's) into OUT. See the module docstring for the guarantees."""
    options = options or ExportOptions()
    options.validate()
    root_text = str(root) if root is not None else get_meta(con, "root")
    if not root_text:
        raise ExportError("the database does not record its dataset folder; pass the root")
    root_real = os.path.realpath(root_text)
    out_real = os.path.realpath(out)
    if _inside(out_real, root_real) or _inside(root_real, out_real):
        raise ExportError(f"OUT {out_real} and the dataset folder {root_real} must not contain each other")
    ids = accepted_ids(con) if image_ids is None else sorted({int(i) for i in image_ids})
    rows = image_files(con, ids)
    unusable = rows[~rows["present"] | (rows["status"] != "ok")]
    if len(unusable):
        raise ExportError(f"{len(unusable)} chosen image(s) are missing or broken, e.g. {unusable['path'].iloc[0]}")
    if len(rows) < len(ids):
        raise ExportError(f"{len(ids) - len(rows)} chosen image id(s) are not in the database")
    if rows.empty:
        raise ExportError("nothing to export: no image is accepted (or chosen)")

    target = _Out(Path(out_real))
    previous = _previous_files(target)
    report = ExportReport(Path(out_real), Path(out_real) / options.image_dir)
    items = _plan(rows, options)
    prefix = f"{options.image_dir}/" if options.image_dir else ""
    planned = {}
    for it in items:
        planned[prefix + it.stem + it.ext] = it
    captions: dict[str, str] = {}
    for it in items:
        source = Path(root_real) / it.source
        if not _inside(os.path.realpath(source), root_real):
            raise ExportError(f"{it.source} now points outside the dataset folder; not exported")
        text = caption(options, _existing_caption(source, root_real, options), it.stem)
        if text:
            captions[prefix + it.stem + options.caption_extension] = text + "\n"
    fixed = {"manifest.csv", "scores.parquet", "dataset.toml"}
    everything = [*planned, *captions, *sorted(fixed)]
    _preflight(target, everything, previous)
    _write_state(target, {**dict.fromkeys(everything), **previous})  # a crash mid-export still knows its files

    hashes: dict[str, str] = {}
    can_link = options.link
    for rel, it in planned.items():
        source = Path(root_real) / it.source
        data = source.read_bytes()
        if it.encode is None and options.bake_orientation and _exif_rotated(data):
            it.encode = "EXIF rotation applied"
        if it.encode:
            data = _encode(data, it, options, report.warnings)
        it.sha256 = hashes[rel] = hashlib.sha256(data).hexdigest()
        changed = None
        if it.encode is None and can_link:
            try:
                changed = target.link(rel, source)
            except OSError as e:
                can_link = False
                report.warnings.append(f"hard links are impossible here ({e.strerror or e}); copied instead")
        if changed is None:
            changed = _copy(target, rel, data, source)
        _count(report, rel, changed)
    table = _manifest(con, options, planned, captions, prefix, rows)
    files = {**{rel: text.encode("utf-8") for rel, text in captions.items()},
             "manifest.csv": _csv_bytes(table), "scores.parquet": _parquet_bytes(table),
             "dataset.toml": dataset_toml(Path(out_real), options).encode("utf-8")}
    for rel, data in files.items():
        hashes[rel] = hashlib.sha256(data).hexdigest()
        _count(report, rel, target.write(rel, data))

    for rel in sorted(set(previous) - set(everything)):
        _remove_stale(target, rel, previous[rel], report)
    _write_state(target, {rel: hashes[rel] for rel in everything})
    report.images = len(planned)
    return report


def _count(report: ExportReport, rel: str, changed: bool) -> None:
    if changed:
        report.written.append(rel)
    else:
        report.unchanged += 1


def _copy(target: _Out, rel: str, data: bytes, source: Path) -> bool:
    """Copy `data` to `rel`; a hard link to the source left by an earlier `link` export becomes a copy."""
    p = target.path(rel)
    if p.is_file() and os.path.samefile(p, source):
        p.unlink()
    return target.write(rel, data)


def _previous_files(target: _Out) -> dict[str, str | None]:
    """Files an earlier export into OUT wrote (rel -> sha256); refuses a non-empty foreign folder."""
    root = Path(target.root)
    if root.exists() and not root.is_dir():
        raise ExportError(f"{root} exists and is not a folder")
    state = target.read(STATE_FILE) if root.exists() else None
    if state is None:
        if root.exists() and any(root.iterdir()):
            raise ExportError(f"{root} is not empty and is not a Curator export; choose an empty or new folder")
        return {}
    try:
        files = json.loads(state)["files"]
        return {str(k): v for k, v in files.items()}
    except (ValueError, KeyError, AttributeError):
        raise ExportError(f"{root / STATE_FILE} is unreadable; delete OUT or choose another folder") from None


def _preflight(target: _Out, rels: list[str], previous: Mapping[str, str | None]) -> None:
    """Before writing anything: every target is safe, and none is a file Curator did not write."""
    for rel in rels:
        p = target.path(rel)
        if p.exists() and rel not in previous:
            raise ExportError(f"{p} exists and was not written by Curator; move it away or choose another OUT")


def _write_state(target: _Out, files: Mapping[str, str | None]) -> None:
    """Record the files the export owns (rel -> sha256, None while being written); unchanged, untouched."""
    body = {"written_by": "curator", "version": 1, "files": dict(files)}
    target.write(STATE_FILE, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())


def _remove_stale(target: _Out, rel: str, sha: str | None, report: ExportReport) -> None:
    data = target.read(rel)
    if data is None:
        return
    if sha is not None and hashlib.sha256(data).hexdigest() != sha:
        report.warnings.append(f"{rel} no longer belongs to the export but was edited since; left in place")
        return
    target.remove(rel)
    report.removed.append(rel)


def _manifest(con: duckdb.DuckDBPyConnection, options: ExportOptions, planned: Mapping[str, _Item],
              captions: Mapping[str, str], prefix: str, rows: pd.DataFrame) -> pd.DataFrame:
    scores = ranked(con, saved_weights(con) if options.weights is None else options.weights, include_errors=True)
    scores = scores.set_index("image_id")
    metric_cols = [c for c in scores.columns if c not in ("path", "status", "error", "width", "height", "ensemble")]
    info = rows.set_index("image_id")
    records = []
    for rel, it in sorted(planned.items()):
        cap = prefix + it.stem + options.caption_extension
        s = scores.loc[it.image_id] if it.image_id in scores.index else None
        records.append({
            "source": it.source, "exported": rel, "caption_file": cap if cap in captions else "",
            "sha256": it.sha256, "source_sha256": info.at[it.image_id, "sha256"],
            "processing": it.encode or ("hard link" if options.link else "copy"),
            "width": it.width, "height": it.height, "decision": info.at[it.image_id, "decision"],
            "ensemble": None if s is None else s["ensemble"],
            **{m: (None if s is None else s[m]) for m in metric_cols},
        })
    table = pd.DataFrame.from_records(records)
    return table.astype({"width": "Int64", "height": "Int64", "ensemble": "float64",
                         **{m: "float64" for m in metric_cols}})


def _csv_bytes(table: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def _parquet_bytes(table: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def export_zip(out: Path | str, zip_path: Path | str | None = None) -> Path:
    """A zip of the export (the files it wrote, not Curator's state file), byte-identical for identical
    exports; written next to OUT unless `zip_path` says otherwise, never inside OUT."""
    target = _Out(Path(out))
    files = sorted(_previous_files(target))
    if not files:
        raise ExportError(f"{out} holds no Curator export to zip")
    zip_file = Path(zip_path) if zip_path is not None else Path(target.root + ".zip")
    if _inside(os.path.realpath(zip_file), target.root):
        raise ExportError("the zip must not be written inside OUT")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel in files:
            data = target.read(rel)
            if data is None:
                continue
            info = zipfile.ZipInfo(rel, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            stored = PurePosixPath(rel).suffix.lower() in (*TRAINER_EXTENSIONS, ".parquet")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = buf.getvalue()
    if not (zip_file.is_file() and zip_file.read_bytes() == data):
        zip_file.parent.mkdir(parents=True, exist_ok=True)
        zip_file.write_bytes(data)
    return zip_file
