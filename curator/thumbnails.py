"""Thumbnails for the dashboard: small JPEGs made once per image content and size, kept on disk.

Files are named by the image's sha256 and the size, so a renamed or moved image keeps its thumbnail,
a changed one gets a new one, and the folder can be served as static files without ever exposing
the dataset itself. Images are read with the same safe decoder the scorers use (bomb limits, EXIF
orientation, every pixel mode), JPEGs reduced while decoding. Pages are generated in parallel, and the
next page can be prepared in the background while the reviewer looks at this one.
"""
from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from curator.decode import DecodeError, decode, read_file

GALLERY_SIZE = 256
PREVIEW_SIZE = 1024


class ThumbnailCache:
    """Thumbnails under `folder`, made on demand. Thread-safe; each file is made at most once."""

    def __init__(self, folder: Path, workers: int = 2, quality: int = 85) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.quality = quality
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="curator-thumbs")
        self._background = ThreadPoolExecutor(1, thread_name_prefix="curator-thumbs-prefetch")
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], Future[Path]] = {}
        self._hashes: dict[tuple[str, int, int], str] = {}   # (path, bytes, mtime_ns) -> sha256
        self.write_error: str | None = None   # why the last thumbnail could not be saved (a full disk)
        for size in (GALLERY_SIZE, PREVIEW_SIZE):   # made now, so there is one to show when the disk fills
            self.placeholder(size)

    def path_for(self, sha256: str, size: int) -> Path:
        return self.folder / sha256[:2] / f"{sha256}-{size}.jpg"

    def get(self, source: Path, sha256: str | None, size: int = GALLERY_SIZE) -> Path:
        """A JPEG of `source` at most `size` pixels on its longer side. `sha256` is the content hash
        the database knows (None: not read yet, so it is computed here). An unreadable file gets a
        placeholder tile instead of an error, since the gallery shows broken images too."""
        if sha256 is not None:
            cached = self.path_for(sha256, size)
            if cached.exists():
                return cached
        return self._submit(self._pool, source, sha256, size).result()

    def many(self, items: Sequence[tuple[Path, str | None]], size: int = GALLERY_SIZE) -> list[Path]:
        """`get` for a page of (source, sha256) pairs, made in parallel."""
        futures = []
        for source, sha in items:
            cached = self.path_for(sha, size) if sha is not None else None
            futures.append(cached if cached is not None and cached.exists()
                           else self._submit(self._pool, source, sha, size))
        return [f if isinstance(f, Path) else f.result() for f in futures]

    def prefetch(self, items: Sequence[tuple[Path, str | None]], size: int = GALLERY_SIZE) -> None:
        """Make thumbnails in the background, one at a time, without waiting for them."""
        for source, sha in items:
            if sha is None or not self.path_for(sha, size).exists():
                self._submit(self._background, source, sha, size)

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- making one ----------------------------------------------------------------------------------
    def _submit(self, pool: ThreadPoolExecutor, source: Path, sha: str | None, size: int) -> Future[Path]:
        key = (str(source), size)
        with self._lock:
            running = self._pending.get(key)
            if running is not None:
                return running
            future = pool.submit(self._make, source, sha, size)
            self._pending[key] = future
        future.add_done_callback(lambda _: self._forget(key))
        return future

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _make(self, source: Path, sha: str | None, size: int) -> Path:
        try:
            for known in (sha, self._known_hash(source)):   # the database's hash may predate an edit
                if known is not None and self.path_for(known, size).exists():
                    return self.path_for(known, size)
            read = read_file(source)
            sha = read.sha256
            target = self.path_for(sha, size)
            if target.exists():
                return target
            image = decode(read.data, source.name, size)
        except (DecodeError, OSError):
            return self.placeholder(size)
        try:
            self._write(Image.fromarray(image.at(size)), target)
        except OSError as e:
            self.write_error = f"cannot save thumbnails in {self.folder}: {e.strerror or e}"
            return self.placeholder(size)
        self.write_error = None
        self._remember(source, sha)
        return target

    def _known_hash(self, source: Path) -> str | None:
        try:
            st = source.stat()
        except OSError:
            return None
        return self._hashes.get((str(source), st.st_size, st.st_mtime_ns))

    def _remember(self, source: Path, sha: str) -> None:
        try:
            st = source.stat()
        except OSError:
            return
        with self._lock:
            self._hashes[(str(source), st.st_size, st.st_mtime_ns)] = sha

    def _write(self, image: Image.Image, target: Path) -> None:
        """Write via a temporary file and rename, so a reader never sees half a JPEG."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".jpg.tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                image.save(fh, "JPEG", quality=self.quality, optimize=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def placeholder(self, size: int) -> Path:
        """A neutral tile with a cross, for files that cannot be shown."""
        target = self.folder / f"_unreadable-{size}.jpg"
        if not target.exists():
            tile = Image.new("RGB", (size, size), (58, 58, 64))
            draw = ImageDraw.Draw(tile)
            m, w = size // 3, max(2, size // 40)
            draw.line((m, m, size - m, size - m), fill=(200, 80, 80), width=w)
            draw.line((m, size - m, size - m, m), fill=(200, 80, 80), width=w)
            self._write(tile, target)
        return target
