"""The one download helper for every scorer's weights: Hub or URL, sha256-checked, cached, offline-aware.

Every weight file a scorer needs is declared once as a `WeightSpec` with its real source and the
sha256 of the real file, so a download that was cut short, tampered with or silently replaced
upstream is refused instead of being loaded. `fetch()` is the only function that touches the network:
it never does when `HF_HUB_OFFLINE` is set, and then says which file is missing and how to get it.

Cache layout (root = the `cache_dir` argument, else `CURATOR_CACHE`, else the Hugging Face hub cache):
- URL files:      <root>/curator/<spec.name>/<filename>
- zip archives:   <root>/curator/<spec.name>/<member>...   (only the listed members are extracted)
- Hub files:      the Hugging Face cache layout under <root> (shared with other HF tools)
A file is hashed once after download (or the first time it is found placed by hand); the result is
remembered in `<root>/curator/<spec.name>/.verified.json` with the file's size and mtime, so later
loads cost a stat, not a re-hash of a gigabyte.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from scorers.base import Availability, WeightsUnavailable

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_TRUTHY = {"1", "true", "yes", "on"}


class ChecksumMismatch(WeightsUnavailable):
    """A downloaded or cached file is not the file the spec pins; it has been quarantined."""


@dataclass(frozen=True)
class WeightSpec:
    """One weight file (or zip archive of files) and where it comes from.

    Exactly one source: `url` (https or file URL), or `hf_repo` + `hf_filename` (+ `hf_revision`,
    ideally a commit). `sha256`/`size` are those of the downloaded file (the archive, for zips).
    `archive_members` makes the cached artifact a folder holding just those files of the zip.
    `optional` marks files a scorer can run without (its description says what it does instead).
    """

    name: str
    sha256: str
    size: int | None = None
    url: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    hf_revision: str | None = None
    archive_members: tuple[str, ...] = ()
    optional: bool = False
    description: str = ""
    license: str = ""

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z0-9][a-z0-9._-]*$", self.name):
            raise ValueError(f"weight name {self.name!r}: use lowercase letters, digits, '.', '_', '-'")
        if not _SHA256.match(self.sha256):
            raise ValueError(f"weight {self.name}: sha256 must be 64 lowercase hex digits")
        if (self.url is None) == (self.hf_repo is None):
            raise ValueError(f"weight {self.name}: give exactly one of url or hf_repo")
        if self.hf_repo is not None and not self.hf_filename:
            raise ValueError(f"weight {self.name}: hf_repo needs hf_filename")

    @property
    def filename(self) -> str:
        if self.url is not None:
            return urllib.parse.unquote(Path(urllib.parse.urlparse(self.url).path).name)
        return Path(str(self.hf_filename)).name

    @property
    def source(self) -> str:
        """Where the file comes from, for messages and listings."""
        if self.url is not None:
            return self.url
        rev = f"@{self.hf_revision}" if self.hf_revision else ""
        return f"hf://{self.hf_repo}{rev}/{self.hf_filename}"


def offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no network access (read at call time, not import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def _blocked(spec: WeightSpec) -> bool:
    """Offline mode forbids network sources; a file:// URL (a local mirror) is not one."""
    return offline() and not (spec.url or "").startswith("file:")


def cache_root(cache_dir: Path | str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CURATOR_CACHE")
    if env:
        return Path(env).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _folder(spec: WeightSpec, cache_dir: Path | str | None) -> Path:
    return cache_root(cache_dir) / "curator" / spec.name


def cached_path(spec: WeightSpec, cache_dir: Path | str | None = None) -> Path:
    """Where the file (or, for archives, the folder of members) is or will be once fetched."""
    folder = _folder(spec, cache_dir)
    if spec.archive_members:
        return folder
    if spec.url is not None:
        return folder / spec.filename
    found = _hf_cached(spec, cache_dir)
    if found is not None:
        return found
    return cache_root(cache_dir) / ("models--" + str(spec.hf_repo).replace("/", "--"))


def is_present(spec: WeightSpec, cache_dir: Path | str | None = None) -> bool:
    """Cheap check (stat only) that the artifact is in the cache with the expected size."""
    path = cached_path(spec, cache_dir)
    if spec.archive_members:
        record = _read_record(spec, cache_dir)
        return (record.get("archive_sha256") == spec.sha256
                and all((path / m).is_file() for m in spec.archive_members))
    if not path.is_file():
        return False
    return spec.size is None or path.stat().st_size == spec.size


def availability(specs: Iterable[WeightSpec], cache_dir: Path | str | None = None) -> Availability:
    """Available unless a required file is missing and cannot be fetched (offline mode)."""
    for spec in specs:
        if spec.optional or is_present(spec, cache_dir):
            continue
        if _blocked(spec):
            return Availability(False, offline_message(spec, cache_dir))
    return Availability(True)


def fetch(spec: WeightSpec, cache_dir: Path | str | None = None, progress: bool = True) -> Path:
    """The verified local path of `spec` (a folder for archives), downloading it if needed.

    Raises WeightsUnavailable (offline and missing, download failed) or ChecksumMismatch.
    """
    if spec.archive_members:
        return _fetch_archive(spec, cache_dir, progress)
    if spec.hf_repo is not None:
        path = _fetch_hf(spec, cache_dir)
    else:
        path = cached_path(spec, cache_dir)
        if not path.is_file():
            if _blocked(spec):
                raise WeightsUnavailable(offline_message(spec, cache_dir))
            _download(spec, path, cache_dir, progress)
    _verify_once(spec, path, cache_dir)
    return path


# -- URL downloads -----------------------------------------------------------------------------------
def _download(spec: WeightSpec, dest: Path, cache_dir: Path | str | None, progress: bool) -> None:
    """Stream `spec.url` to `dest`, hashing on the way; only a verified file is moved into place."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(str(spec.url), headers={"User-Agent": "curator-weights/1"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            announced = int(response.headers.get("Content-Length") or 0)
            received = 0
            with tqdm(total=announced or spec.size, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                      desc=f"downloading {spec.name}", disable=not progress, leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if announced and received != announced:
            raise OSError(f"connection closed after {received} of {announced} bytes")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # incl. cut-off transfers
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise WeightsUnavailable(f"weights {spec.name}: download from {spec.url} failed: {reason}") from e
    actual = digest.hexdigest()
    if actual != spec.sha256:
        raise ChecksumMismatch(_mismatch_message(spec, actual, _quarantine(tmp, dest)))
    os.replace(tmp, dest)
    _write_record(spec, cache_dir, dest)


def _fetch_archive(spec: WeightSpec, cache_dir: Path | str | None, progress: bool) -> Path:
    folder = cached_path(spec, cache_dir)
    if is_present(spec, cache_dir):
        return folder
    archive = folder / spec.filename
    if not archive.is_file():
        if _blocked(spec):
            raise WeightsUnavailable(offline_message(spec, cache_dir))
        _download(spec, archive, cache_dir, progress)
    else:
        _verify_once(spec, archive, cache_dir)
    try:
        with zipfile.ZipFile(archive) as zf:
            by_name = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
            missing = [m for m in spec.archive_members if m not in by_name]
            if missing:
                raise WeightsUnavailable(f"weights {spec.name}: archive lacks {', '.join(missing)}")
            for member in spec.archive_members:  # written under our own names: no path traversal
                tmp = folder / f".{member}.part"
                with zf.open(by_name[member]) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                os.replace(tmp, folder / member)
    except zipfile.BadZipFile as e:
        raise WeightsUnavailable(f"weights {spec.name}: {archive} is not a valid zip: {e}") from e
    _write_record(spec, cache_dir, extracted=True)
    archive.unlink()  # the members are what we keep; the archive would double the disk use
    return folder


# -- Hugging Face Hub --------------------------------------------------------------------------------
def _hf_cached(spec: WeightSpec, cache_dir: Path | str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(str(spec.hf_repo), str(spec.hf_filename), cache_dir=str(cache_root(cache_dir)),
                                   revision=spec.hf_revision)
    return Path(found) if isinstance(found, str) else None


def _fetch_hf(spec: WeightSpec, cache_dir: Path | str | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(str(spec.hf_repo), str(spec.hf_filename), revision=spec.hf_revision,
                                    cache_dir=str(cache_root(cache_dir)), local_files_only=offline()))
    except LocalEntryNotFoundError as e:
        if offline():
            raise WeightsUnavailable(offline_message(spec, cache_dir)) from e
        raise WeightsUnavailable(f"weights {spec.name}: download from {spec.source} failed: {e}") from e
    except Exception as e:  # network, auth, missing repo: all mean "cannot have this file now"
        raise WeightsUnavailable(f"weights {spec.name}: download from {spec.source} failed: "
                                 f"{type(e).__name__}: {e}") from e


# -- verification ------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_once(spec: WeightSpec, path: Path, cache_dir: Path | str | None) -> None:
    """Hash `path` unless this exact file (size, mtime) was verified before; quarantine a mismatch."""
    stat = path.stat()
    record = _read_record(spec, cache_dir)
    if (record.get("sha256") == spec.sha256 and record.get("size") == stat.st_size
            and record.get("mtime_ns") == stat.st_mtime_ns and record.get("path") == str(path)):
        return
    actual = sha256_file(path)
    if actual != spec.sha256:
        target = path.resolve()  # Hub snapshots are symlinks: quarantine the blob, drop the link
        where = _quarantine(target, _folder(spec, cache_dir) / spec.filename)
        if path.is_symlink():
            path.unlink()
        raise ChecksumMismatch(_mismatch_message(spec, actual, where))
    _write_record(spec, cache_dir, path)


def _quarantine(path: Path, dest: Path) -> Path:
    """Move a bad file aside (kept for inspection, replaced by the next bad one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    bad = dest.with_name(dest.name + ".sha256-mismatch")
    os.replace(path, bad)
    return bad


def _record_path(spec: WeightSpec, cache_dir: Path | str | None) -> Path:
    return _folder(spec, cache_dir) / ".verified.json"


def _read_record(spec: WeightSpec, cache_dir: Path | str | None) -> dict:
    try:
        return json.loads(_record_path(spec, cache_dir).read_text())
    except (OSError, ValueError):
        return {}


def _write_record(spec: WeightSpec, cache_dir: Path | str | None, path: Path | None = None,
                  extracted: bool = False) -> None:
    record: dict = {"name": spec.name, "sha256": spec.sha256}
    if path is not None:
        stat = path.stat()
        record.update(path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    if extracted:
        record["archive_sha256"] = spec.sha256
    target = _record_path(spec, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record))


def offline_message(spec: WeightSpec, cache_dir: Path | str | None) -> str:
    return (f"weights {spec.name} not in cache and HF_HUB_OFFLINE=1 (expected at "
            f"{cached_path(spec, cache_dir)}; run `python -m curator weights --prefetch` with network access)")


def _mismatch_message(spec: WeightSpec, actual: str, quarantined: Path) -> str:
    return (f"weights {spec.name}: sha256 mismatch for {spec.source} (expected {spec.sha256}, got {actual}); "
            f"the file was quarantined as {quarantined}")


# -- what every scorer needs -------------------------------------------------------------------------
def specs_of(scorer_cls: type) -> tuple[WeightSpec, ...]:
    """The weight files a scorer class declares in its `weight_specs` class attribute (none if absent)."""
    return tuple(getattr(scorer_cls, "weight_specs", ()))


def weights_table(scorer_classes: Mapping[str, type], cache_dir: Path | str | None = None) -> list[dict]:
    """One row per (scorer, file): what `python -m curator weights` lists."""
    rows = []
    for scorer_name, cls in scorer_classes.items():
        for spec in specs_of(cls):
            rows.append({
                "scorer": scorer_name, "name": spec.name, "file": spec.filename, "size": spec.size,
                "optional": spec.optional, "present": is_present(spec, cache_dir),
                "path": str(cached_path(spec, cache_dir)), "source": spec.source, "sha256": spec.sha256,
                "license": spec.license, "description": spec.description,
            })
    return rows


def prefetch(scorer_classes: Mapping[str, type], cache_dir: Path | str | None = None,
             progress: bool = True) -> dict[str, str | None]:
    """Fetch every declared file once; returns name -> None on success or the error message."""
    results: dict[str, str | None] = {}
    for cls in scorer_classes.values():
        for spec in specs_of(cls):
            if spec.name in results:
                continue
            try:
                fetch(spec, cache_dir, progress)
                results[spec.name] = None
            except WeightsUnavailable as e:
                results[spec.name] = str(e)
    return results
