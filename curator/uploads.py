"""Turning an uploaded zip into a dataset folder, safely (the Spaces way of opening a dataset).

Only image files are extracted, into `<uploads folder>/<name>-<hash of the zip>/` (the user's own, see
curator.access), so uploading the same zip again reopens the same dataset (and its decisions). Entries
are never trusted: absolute paths, `..`, drive letters, symlinks and encrypted entries are skipped;
the number of images, each file's size, the total size and each entry's compression ratio (the mark
of a zip bomb) are limited from the headers before anything is written, and again while bytes are
copied. Extraction goes to a temporary folder renamed into place at the end, so a failed upload
leaves nothing half-made.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from curator.access import uploads_dir
from curator.paths import slug
from curator.scan import is_image_name

_COMPLETE = ".curator-upload-complete"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_files: int = int(os.environ.get("CURATOR_UPLOAD_MAX_FILES", 50_000))
    max_total_bytes: int = int(os.environ.get("CURATOR_UPLOAD_MAX_BYTES", 8 * 1024 ** 3))
    max_file_bytes: int = 256 * 1024 ** 2
    max_ratio: float = 100.0      # uncompressed / compressed; images barely compress, bombs do


@dataclass
class Extracted:
    root: Path
    images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (entry name, reason)
    reused: bool = False


class UploadError(ValueError):
    """The upload cannot become a dataset; the message says why."""


def extract_zip(zip_path: Path | str, name: str | None = None, dest_parent: Path | None = None,
                limits: Limits = Limits()) -> Extracted:
    """Extract the images of `zip_path` (named `name`, e.g. the uploaded file's name) into a folder
    of their own under `dest_parent` (default: the uploads folder of an app without login)."""
    zip_path = Path(zip_path)
    dest_parent = Path(dest_parent) if dest_parent is not None else uploads_dir(None)
    digest = _sha256(zip_path)
    dest = dest_parent / f"{slug(Path(name or zip_path.name).stem, 'upload')}-{digest[:12]}"
    if (dest / _COMPLETE).exists():
        return Extracted(dest, sum(1 for p in dest.rglob("*") if p.is_file() and is_image_name(p.name)), reused=True)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UploadError(f"not a readable zip file: {e}") from None
    with archive:
        plan, skipped = _plan(archive.infolist(), limits)
        if not plan:
            raise UploadError("the zip contains no image files"
                              + (f" ({len(skipped)} entries skipped)" if skipped else ""))
        dest_parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_parent))
        try:
            written = _extract(archive, plan, tmp, limits, skipped)
            if written == 0:
                raise UploadError("no image in the zip could be extracted")
            (tmp / _COMPLETE).write_text(f"extracted from {zip_path.name}\n")
            try:
                tmp.rename(dest)
            except OSError:   # another request extracted the same zip first
                if not (dest / _COMPLETE).exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return Extracted(dest, written, skipped, reused=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Extracted(dest, written, skipped)


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path an entry may be written to, or None if it tries to leave the folder."""
    name = name.replace("\\", "/")
    if not name or name.startswith("/") or "\x00" in name or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def _plan(infos: list[zipfile.ZipInfo], limits: Limits) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]],
                                                              list[tuple[str, str]]]:
    """Which entries to extract, and why the others are not; raises when the upload as a whole is
    over the limits."""
    plan, skipped, seen, total = [], [], set(), 0
    for info in infos:
        if info.is_dir():
            continue
        rel = safe_member_path(info.filename)
        reason = None
        if rel is None:
            reason = "unsafe path (absolute or leaving the folder)"
        elif rel.parts[0] == "__MACOSX" or any(p.startswith(".") for p in rel.parts):
            reason = "hidden or system file"
        elif not is_image_name(rel.name):
            reason = "not an image file"
        elif stat.S_ISLNK(info.external_attr >> 16):
            reason = "symbolic link"
        elif info.flag_bits & 0x1:
            reason = "encrypted"
        elif info.file_size > limits.max_file_bytes:
            reason = f"larger than {limits.max_file_bytes} bytes"
        elif info.file_size > limits.max_ratio * max(info.compress_size, 1):
            reason = "suspicious compression ratio (zip bomb?)"
        elif str(rel).lower() in seen:
            reason = "duplicate name"
        if reason:
            skipped.append((info.filename, reason))
            continue
        seen.add(str(rel).lower())
        total += info.file_size
        plan.append((info, rel))
    if len(plan) > limits.max_files:
        raise UploadError(f"the zip holds {len(plan)} images, over the limit of {limits.max_files}")
    if total > limits.max_total_bytes:
        raise UploadError(f"the zip's images total {total} bytes, over the limit of {limits.max_total_bytes}")
    return plan, skipped


def _extract(archive: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, PurePosixPath]], root: Path,
             limits: Limits, skipped: list[tuple[str, str]]) -> int:
    """Copy the planned entries, counting real bytes rather than trusting the headers."""
    written, total, real_root = 0, 0, root.resolve()
    for info, rel in plan:
        target = root.joinpath(*rel.parts)
        if not target.resolve().is_relative_to(real_root):   # belt and braces after safe_member_path
            skipped.append((info.filename, "unsafe path (absolute or leaving the folder)"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        try:
            with archive.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    size += len(chunk)
                    if size > min(limits.max_file_bytes, info.file_size) or total + size > limits.max_total_bytes:
                        raise UploadError("entry larger than its header says or over the size limit")
                    dst.write(chunk)
        except (UploadError, zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
            target.unlink(missing_ok=True)
            skipped.append((info.filename, f"could not extract: {e}"))
            continue
        total += size
        written += 1
    return written


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
