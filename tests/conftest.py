"""Test-wide settings: never touch the network or a user's caches and data folders."""
import os
import tempfile

import pytest

_sandbox = tempfile.mkdtemp(prefix="curator-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["CURATOR_CACHE"] = os.path.join(_sandbox, "cache")
os.environ["HF_HOME"] = os.path.join(_sandbox, "hf")
os.environ["CURATOR_DATA_DIR"] = os.path.join(_sandbox, "data")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for a module's browser tests (see tests/browser.py)."""
    from tests.browser import chromium

    with chromium() as b:
        yield b
