"""The weights helper: download, verify, cache, quarantine, offline mode, Hub layout, CLI listing."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from curator.cli import main
from scorers import registered
from scorers.base import WeightsUnavailable
from scorers.brisque import BRISQUE_MODEL_LIVE, BRISQUE_RANGE_LIVE
from scorers.clip import AESTHETIC_HEAD_L14
from scorers.weights import (
    ChecksumMismatch,
    WeightSpec,
    availability,
    cached_path,
    fetch,
    is_present,
    weights_table,
)
from tests.weight_files import SHARED_WEIGHTS, file_spec, serving

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test sandbox is offline by default; these tests download from 127.0.0.1 only."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def url_spec(url: str, sha: str = PAYLOAD_SHA, **kwargs: object) -> WeightSpec:
    return WeightSpec(name="test-weights", url=url, sha256=sha, size=kwargs.pop("size", len(PAYLOAD)), **kwargs)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="sha256"):
        WeightSpec(name="x", url="https://example.org/x.bin", sha256="abc")
    with pytest.raises(ValueError, match="exactly one"):
        WeightSpec(name="x", url="https://example.org/x.bin", hf_repo="a/b", hf_filename="x", sha256="0" * 64)
    with pytest.raises(ValueError, match="exactly one"):
        WeightSpec(name="x", sha256="0" * 64)
    assert WeightSpec(name="x", url="https://e.org/a/sac%2Blogos.pth", sha256="0" * 64).filename == "sac+logos.pth"


def test_download_verifies_caches_and_does_not_download_twice(tmp_path: Path, online: None) -> None:
    with serving({"/w.bin": PAYLOAD}) as server:
        spec = url_spec(server.url("/w.bin"))
        assert not is_present(spec, tmp_path)
        assert availability([spec], tmp_path).ok  # missing but fetchable
        path = fetch(spec, tmp_path, progress=False)
        assert path == cached_path(spec, tmp_path) == tmp_path / "curator" / "test-weights" / "w.bin"
        assert path.read_bytes() == PAYLOAD and is_present(spec, tmp_path)
        assert fetch(spec, tmp_path, progress=False) == path
        assert server.gets["/w.bin"] == 1
    assert not list(path.parent.glob("*.part")), "no partial file may be left behind"


def test_download_shows_progress(tmp_path: Path, online: None, capsys: pytest.CaptureFixture[str]) -> None:
    with serving({"/w.bin": PAYLOAD}) as server:
        fetch(url_spec(server.url("/w.bin")), tmp_path, progress=True)
    assert "downloading test-weights" in capsys.readouterr().err


def test_file_url_source(tmp_path: Path) -> None:
    source = tmp_path / "made.bin"
    source.write_bytes(PAYLOAD)
    spec = file_spec(source, "made")
    assert spec.url.startswith("file://")
    assert fetch(spec, tmp_path / "cache", progress=False).read_bytes() == PAYLOAD


def test_checksum_mismatch_quarantines_and_explains(tmp_path: Path, online: None) -> None:
    with serving({"/w.bin": b"not the pinned file"}) as server:
        spec = url_spec(server.url("/w.bin"), size=None)
        with pytest.raises(ChecksumMismatch) as err:
            fetch(spec, tmp_path, progress=False)
    message = str(err.value)
    assert PAYLOAD_SHA in message and hashlib.sha256(b"not the pinned file").hexdigest() in message
    assert not cached_path(spec, tmp_path).exists() and not is_present(spec, tmp_path)
    quarantined = cached_path(spec, tmp_path).with_name("w.bin.sha256-mismatch")
    assert quarantined.read_bytes() == b"not the pinned file" and str(quarantined) in message


def test_file_placed_by_hand_is_verified_once_and_replaced_file_is_rechecked(tmp_path: Path) -> None:
    spec = url_spec("https://example.invalid/w.bin")  # offline sandbox: any network use would fail
    target = cached_path(spec, tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    assert fetch(spec, tmp_path) == target
    record = json.loads((target.parent / ".verified.json").read_text())
    assert record["sha256"] == PAYLOAD_SHA and record["size"] == len(PAYLOAD)
    corrupt = bytearray(PAYLOAD)
    corrupt[1000] ^= 0xFF
    target.write_bytes(bytes(corrupt))  # same size, new mtime: must be hashed again
    os.utime(target, ns=(record["mtime_ns"] + 10**9, record["mtime_ns"] + 10**9))
    with pytest.raises(ChecksumMismatch):
        fetch(spec, tmp_path)
    assert not target.exists()


def test_offline_missing_weights_are_unavailable_without_network(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with serving({"/w.bin": PAYLOAD}) as server:
        spec = url_spec(server.url("/w.bin"))
        status = availability([spec], tmp_path)
        with pytest.raises(WeightsUnavailable) as err:
            fetch(spec, tmp_path)
        assert server.gets["/w.bin"] == 0
    assert not status.ok
    assert status.reason.startswith("weights test-weights not in cache and HF_HUB_OFFLINE=1")
    assert str(status) == f"unavailable: {status.reason}"
    assert str(err.value).startswith("weights test-weights not in cache and HF_HUB_OFFLINE=1")
    optional = url_spec(server.url("/w.bin"), optional=True)
    assert availability([optional], tmp_path).ok


def test_offline_uses_what_is_cached(tmp_path: Path, online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving({"/w.bin": PAYLOAD}) as server:
        spec = url_spec(server.url("/w.bin"))
        fetch(spec, tmp_path, progress=False)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert availability([spec], tmp_path).ok
        assert fetch(spec, tmp_path).read_bytes() == PAYLOAD
        assert server.gets["/w.bin"] == 1


def test_failed_download_is_a_clear_error(tmp_path: Path, online: None) -> None:
    with serving({}) as server:
        spec = url_spec(server.url("/missing.bin"))
        with pytest.raises(WeightsUnavailable, match=r"weights test-weights: download from .*missing\.bin failed"):
            fetch(spec, tmp_path, progress=False)
    assert not list(cached_path(spec, tmp_path).parent.glob("*.part")) and not is_present(spec, tmp_path)


def test_cut_off_download_leaves_nothing_behind(tmp_path: Path, online: None) -> None:
    with serving({"/w.bin": PAYLOAD}, cut_off=frozenset({"/w.bin"})) as server:
        spec = url_spec(server.url("/w.bin"))
        with pytest.raises(WeightsUnavailable, match="download from .* failed"):
            fetch(spec, tmp_path, progress=False)
    assert not list(cached_path(spec, tmp_path).parent.glob("*")) and not is_present(spec, tmp_path)


def test_cache_dir_defaults_to_curator_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATOR_CACHE", str(tmp_path / "cc"))
    spec = url_spec("https://example.invalid/w.bin")
    assert cached_path(spec) == tmp_path / "cc" / "curator" / "test-weights" / "w.bin"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_archive_extracts_only_listed_members(tmp_path: Path, online: None) -> None:
    archive = _zip(tmp_path / "pack.zip", {"pack/a.onnx": b"A" * 100, "pack/b.onnx": b"B" * 50, "extra.txt": b"x"})
    with serving({"/pack.zip": archive.read_bytes()}) as server:
        spec = WeightSpec(name="pack", url=server.url("/pack.zip"), sha256=hashlib.sha256(archive.read_bytes())
                          .hexdigest(), archive_members=("a.onnx", "b.onnx"))
        folder = fetch(spec, tmp_path / "cache", progress=False)
        assert folder == cached_path(spec, tmp_path / "cache") and is_present(spec, tmp_path / "cache")
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["a.onnx", "b.onnx"]
        assert (folder / "a.onnx").read_bytes() == b"A" * 100
        assert fetch(spec, tmp_path / "cache", progress=False) == folder
        assert server.gets["/pack.zip"] == 1
        missing = WeightSpec(name="pack2", url=spec.url, sha256=spec.sha256, archive_members=("c.onnx",))
        with pytest.raises(WeightsUnavailable, match="archive lacks c.onnx"):
            fetch(missing, tmp_path / "cache", progress=False)


_HUB_SCRIPT = r"""
import hashlib, json, os, sys, threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
data = os.urandom(50_000)
gets = Counter()
class Hub(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def _head(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest())
        self.send_header("X-Repo-Commit", "c" * 40)
        self.end_headers()
    def do_HEAD(self): self._head()
    def do_GET(self):
        gets[self.path] += 1
        if "/resolve/" not in self.path: self.send_error(404); return
        self._head(); self.wfile.write(data)
hub = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=hub.serve_forever, daemon=True).start()
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:%d" % hub.server_port
from scorers.weights import ChecksumMismatch, WeightSpec, fetch
cache = sys.argv[1]
good = WeightSpec(name="hub-file", hf_repo="org/model", hf_filename="w.bin", sha256=hashlib.sha256(data).hexdigest())
first = fetch(good, cache, progress=False)
second = fetch(good, cache, progress=False)
bad = WeightSpec(name="hub-bad", hf_repo="org/other", hf_filename="w.bin", sha256="0" * 64)
try:
    fetch(bad, cache, progress=False)
    mismatch = None
except ChecksumMismatch as e:
    mismatch = str(e)
print(json.dumps({"first": str(first), "same": str(first) == str(second), "ok": open(first, "rb").read() == data,
                  "downloads": gets["/org/model/resolve/main/w.bin"], "mismatch": mismatch,
                  "bad_left": os.path.exists(os.path.join(cache, "models--org--other", "snapshots", "c" * 40,
                                                          "w.bin"))}))
"""


def test_hub_download_through_huggingface_hub(tmp_path: Path) -> None:
    """The real hf_hub_download path against a local stand-in for the Hub (HF_ENDPOINT is read at import,
    so this runs in a fresh interpreter), then offline reuse of its cache in this one."""
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _HUB_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["same"] and result["downloads"] == 1
    assert "models--org--model" in result["first"]
    assert result["mismatch"] and "sha256 mismatch" in result["mismatch"] and not result["bad_left"]
    # offline (the sandbox default): the Hub cache is found without any network
    data_sha = hashlib.sha256(Path(result["first"]).read_bytes()).hexdigest()
    spec = WeightSpec(name="hub-file", hf_repo="org/model", hf_filename="w.bin", sha256=data_sha)
    assert is_present(spec, tmp_path) and fetch(spec, tmp_path) == Path(result["first"])
    gone = WeightSpec(name="hub-gone", hf_repo="org/absent", hf_filename="w.bin", sha256=data_sha)
    with pytest.raises(WeightsUnavailable, match="hub-gone not in cache and HF_HUB_OFFLINE=1"):
        fetch(gone, tmp_path)


@pytest.mark.skipif(not SHARED_WEIGHTS.is_dir(), reason="real weight files not available here")
@pytest.mark.parametrize("spec", [AESTHETIC_HEAD_L14, BRISQUE_MODEL_LIVE, BRISQUE_RANGE_LIVE], ids=lambda s: s.name)
def test_real_files_match_the_product_pins(spec: WeightSpec, tmp_path: Path) -> None:
    """The product's sha256/size pins are those of the real files, placed in a cache by hand."""
    target = cached_path(spec, tmp_path)
    target.parent.mkdir(parents=True)
    shutil.copyfile(SHARED_WEIGHTS / spec.filename, target)
    assert is_present(spec, tmp_path)
    assert fetch(spec, tmp_path) == target


def test_weights_command_lists_every_declared_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "--json", "--cache-dir", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    rows = listed["files"]
    assert rows == weights_table(registered(), tmp_path)
    names = {(r["scorer"], r["name"]) for r in rows}
    assert {("aesthetic", "clip-vit-l-14-openai"), ("aesthetic", "laion-aesthetic-sac-logos-ava1-l14"),
            ("clip_iqa", "clip-vit-l-14-openai"), ("face", "insightface-buffalo-l"),
            ("identity", "insightface-buffalo-l"), ("brisque", "opencv-brisque-model-live")} <= names
    assert all(not r["present"] and r["path"].startswith(str(tmp_path)) for r in rows)
    assert main(["weights", "--cache-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "clip-vit-l-14-openai" in text and "889.6 MiB" in text and "missing (optional)" in text


def test_weights_prefetch_fails_clearly_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "--prefetch", "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "curator: weights clip-vit-l-14-openai not in cache and HF_HUB_OFFLINE=1" in err
    assert "insightface-buffalo-l not in cache" in err
