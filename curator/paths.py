"""Where Curator keeps its own files (databases, thumbnails, exports) when the user names no path."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def data_dir() -> Path:
    """`CURATOR_DATA_DIR`, else `/data/curator` on a Hugging Face Space with persistent storage, else
    the XDG data folder (~/.local/share/curator)."""
    if os.environ.get("CURATOR_DATA_DIR"):
        return Path(os.environ["CURATOR_DATA_DIR"]).expanduser()
    if os.environ.get("SPACE_ID") and Path("/data").is_dir():
        return Path("/data/curator")
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "curator"


def slug(text: str, fallback: str, strip: str = "-.") -> str:
    """A readable, filesystem-safe folder name from `text`: other characters become '-', the ends
    lose `strip`, at most 40 characters; `fallback` if nothing is left. Callers add a hash, since
    different texts can clean up alike."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(strip)[:40] or fallback


def dataset_dir(root: Path | str) -> Path:
    """A folder of Curator's own per dataset root: a readable name plus a hash of the absolute path."""
    root = Path(root).resolve()
    name = slug(root.name, "root", strip="-")
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    return data_dir() / "datasets" / f"{name}-{digest}"


def default_db(root: Path | str) -> Path:
    return dataset_dir(root) / "curator.duckdb"
