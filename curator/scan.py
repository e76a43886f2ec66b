"""Finding the images under a dataset root.

Recursive and case-insensitive on extensions. Symlinks are followed only while they stay inside the
root (a file symlink leaving it is reported, with its reason, rather than silently read), and each
directory is entered once, so symlink loops end. Real folders are walked before symlinked ones, so a
folder reachable both ways is listed under its real path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class ScannedFile:
    rel: str             # relative to the root, '/' separators
    path: Path           # absolute path to read
    bytes: int | None
    mtime: float | None
    error: str | None = None


class ScanError(RuntimeError):
    """The root itself cannot be scanned."""


def folder_missing(root: Path | str) -> str | None:
    """Why `root` can no longer be read as a dataset, or None if it can: deleted or moved away, or
    an unmounted drive or share (which leaves an empty mount point behind)."""
    try:
        with os.scandir(root) as entries:
            if next(entries, None) is not None:
                return None
        return f"dataset folder {root} is empty (an unmounted drive or share?)"
    except (FileNotFoundError, NotADirectoryError):
        return f"dataset folder {root} is gone (deleted, moved or unmounted)"
    except OSError as e:
        return f"dataset folder {root} cannot be read: {e.strerror or e}"


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def scan(root: Path | str) -> list[ScannedFile]:
    """Every image file under `root`, sorted by relative path."""
    root = Path(root)
    if not root.exists():
        raise ScanError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise ScanError(f"not a folder: {root}")
    real_root = os.path.realpath(root)
    found: list[ScannedFile] = []
    seen_dirs: set[tuple[int, int]] = set()
    stack = [(str(root), "")]
    linked: list[tuple[str, str]] = []
    while stack or linked:
        directory, rel_dir = stack.pop() if stack else linked.pop(0)
        try:
            st = os.stat(directory)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
        except OSError:
            continue  # unreadable subfolder: nothing in it can be listed, the rest goes on
        for entry in entries:
            rel = f"{rel_dir}{entry.name}"
            try:
                is_link = entry.is_symlink()
                if entry.is_dir(follow_symlinks=True):
                    if not is_link:
                        stack.append((entry.path, rel + "/"))
                    elif _inside(os.path.realpath(entry.path), real_root):
                        linked.append((entry.path, rel + "/"))
                    continue
            except OSError:
                pass
            if not is_image_name(entry.name):
                continue
            found.append(_describe(entry, rel, is_link, real_root))
    found.sort(key=lambda f: f.rel)
    return found


def _describe(entry: os.DirEntry, rel: str, is_link: bool, real_root: str) -> ScannedFile:
    path = Path(entry.path)
    if is_link:
        target = os.path.realpath(entry.path)
        if not _inside(target, real_root):
            return ScannedFile(rel, path, None, None, "symlink points outside the dataset folder; not followed")
        if not os.path.exists(target):
            return ScannedFile(rel, path, None, None, "broken symlink")
    try:
        st = entry.stat(follow_symlinks=True)
    except OSError as e:
        return ScannedFile(rel, path, None, None, f"cannot stat file: {e.strerror or e}")
    if not os.path.isfile(entry.path):
        return ScannedFile(rel, path, None, None, "not a regular file")
    return ScannedFile(rel, path, int(st.st_size), float(st.st_mtime))
