"""Near-duplicates, selection and export in the real app, in a real browser (Debian's Chromium via
Playwright): find the clusters of a synthetic video, keep the best of each, preview a diverse selection,
export it, download the zip and check what is inside."""
from __future__ import annotations

import csv
import hashlib
import io
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.browser import fill_number, needs_chromium
from tests.live_app import REPO, app_env, free_port, start_app, stop_app

pytestmark = needs_chromium
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

ARTIFACTS = REPO / "test-artifacts"   # screenshots, not committed
SHOTS, FRAMES, SINGLES = 3, 5, 2


def make_video(root: Path) -> None:
    """SHOTS slow pans of FRAMES frames each (some re-encoded or blurred) and SINGLES unrelated photos."""
    from curator.degrade import gaussian_blur, jpeg
    from tests.images import photo, save

    for s in range(SHOTS):
        scene = photo(300 + s, (360, 270))
        for f in range(FRAMES):
            frame = scene[2 * f:2 * f + 240, 3 * f:3 * f + 320]
            frame = jpeg(frame, 60) if f % 2 else gaussian_blur(frame, 0.7) if f == 2 else frame
            save(frame, root / f"shot{s}" / f"frame_{f}.png")
    for n in range(SINGLES):
        save(photo(600 + n, (320, 240)), root / f"single_{n}.jpg", quality=90)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("ui-export")
    folder = base / "video"
    make_video(folder)
    port, log = free_port(), base / "app.log"
    proc = start_app([sys.executable, "app.py", str(folder), "--port", str(port), "--scorers", "phash"],
                     app_env(base), log, port, timeout=90)
    yield f"http://127.0.0.1:{port}/"
    stop_app(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#cur-export-section").screenshot(path=str(ARTIFACTS / f"{name}.png"))


def wait_count(page, cls: str, n: int) -> None:
    """Wait for the review header's accepted ('acc') or rejected ('rej') count to read `n`."""
    page.wait_for_function(f"() => document.querySelector('#cur-counts .{cls}')?.dataset.n == '{n}'",
                           timeout=15_000)


def gallery_captions(page, elem_id: str) -> list[str]:
    return page.eval_on_selector_all(f"#{elem_id} .thumbnail-item img", "els => els.map(e => e.alt)")


def test_dedupe_select_export_and_download(app_url: str, tmp_path: Path, browser) -> None:
    page = browser.new_page(viewport={"width": 1600, "height": 1200}, accept_downloads=True)
    page.goto(app_url)
    page.wait_for_selector(".cur-progress[data-state='done']", timeout=60_000)
    page.get_by_text("Near-duplicates · selection · export").click()

    # Near-duplicates: every shot is one cluster, shown side by side with its best member marked.
    page.locator("#cur-dup-find").click()
    page.wait_for_selector(f".cur-dup-summary[data-clusters='{SHOTS}']", timeout=30_000)
    page.wait_for_function(f"() => document.querySelectorAll('#cur-cluster .thumbnail-item').length == {FRAMES}")
    members = gallery_captions(page, "cur-cluster")
    assert members[0].startswith("★ best") and not any(c.startswith("★") for c in members[1:])
    assert len({c.split(" · ")[-1].split("/")[0] for c in members}) == 1   # all from one shot
    shot(page, "11-near-duplicates")

    # One click keeps the best of each cluster; the review counts follow; its Undo reverts it.
    rejected = SHOTS * (FRAMES - 1)
    page.locator("#cur-keep-best").click()
    page.wait_for_selector(f".cur-dup-summary[data-rejected='{rejected}']", timeout=30_000)
    wait_count(page, "rej", rejected)
    page.locator("#cur-keep-best-undo").click()
    page.wait_for_selector(f".cur-dup-summary[data-restored='{rejected}']", timeout=30_000)
    wait_count(page, "rej", 0)
    page.locator("#cur-keep-best").click()
    wait_count(page, "rej", rejected)

    # Selection: a diverse preview of what is left (one per shot plus the singles).
    page.get_by_role("tab", name="Selection").click()
    fill_number(page, "cur-sel-k", "400", str(SHOTS + SINGLES))
    page.locator("#cur-sel-preview").click()
    page.wait_for_selector(f".cur-sel-summary[data-count='{SHOTS + SINGLES}']", timeout=30_000)
    page.locator("#cur-sel-propose").click()                  # proposed as accepted, then undone
    wait_count(page, "acc", SHOTS + SINGLES)
    page.locator("#cur-sel-undo").click()
    wait_count(page, "acc", 0)

    # Export the previewed selection and download the zip.
    page.get_by_role("tab", name="Export").click()
    page.get_by_label("the previewed selection").check()
    page.locator("#cur-exp-trigger textarea").fill("ohwx")
    page.locator("#cur-exp-class textarea").fill("woman")
    page.locator("#cur-export-run").click()
    page.wait_for_selector(f".cur-export-report[data-images='{SHOTS + SINGLES}']", timeout=60_000)
    shot(page, "12-export")
    with page.expect_download(timeout=30_000) as download:
        page.locator("#cur-export-download").click()
    saved = tmp_path / "export.zip"
    download.value.save_as(saved)

    with zipfile.ZipFile(saved) as zf:
        names = set(zf.namelist())
        folder = "10_ohwx woman"
        images = sorted(n for n in names if n.endswith((".png", ".jpg")))
        assert names == {"dataset.toml", "manifest.csv", "scores.parquet", *images,
                         *(n.rsplit(".", 1)[0] + ".txt" for n in images)}
        assert len(images) == SHOTS + SINGLES and all(n.startswith(folder + "/") for n in images)
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert sorted(r["exported"] for r in manifest) == images
        for row in manifest:
            assert hashlib.sha256(zf.read(row["exported"])).hexdigest() == row["sha256"]
            assert zf.read(row["caption_file"]).decode() == "ohwx\n"
        assert {r["source"].split("/")[0] for r in manifest} == {f"shot{s}" for s in range(SHOTS)} | {
            f"single_{n}.jpg" for n in range(SINGLES)}
        subset = tomllib.loads(zf.read("dataset.toml").decode())["datasets"][0]["subsets"][0]
        assert subset["image_dir"] == folder and subset["class_tokens"] == "ohwx woman"
