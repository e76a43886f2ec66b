"""The real app in a real browser: Debian's Chromium, driven by Playwright, against `python app.py` on a
generated dataset scored by the fast classic scorers.

Opens the dataset, watches progress reach 100%, sorts, moves a weight slider and sees the order
change, accepts / rejects with keys and with buttons, undoes, reloads the page and restarts the app
and finds the decisions kept, and checks that two tabs do not undo each other's work. Screenshots of
the main views go to test-artifacts/ (not committed).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.browser import fill_number, needs_chromium
from tests.live_app import REPO, LiveApp

pytestmark = needs_chromium
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

ARTIFACTS = REPO / "test-artifacts"
N_IMAGES = 40
N_EXTRA = 12


def make_dataset(root: Path) -> None:
    """40 photo-like images, two thirds with a defect of growing severity, plus one broken file."""
    from curator.degrade import LADDER
    from tests.images import photo, save

    defects = sorted(LADDER)
    for i in range(N_IMAGES):
        img, label = photo(i, (400, 300)), "clean"
        if i % 3:
            defect, level = defects[i % len(defects)], 1 + i % 5
            img, label = LADDER[defect](img, level), f"{defect}{level}"
        save(img, root / ("sub" if i % 4 == 0 else "") / f"img{i:03d}_{label}.jpg", quality=90)
    (root / "broken.jpg").write_bytes(b"this is not an image")


def make_extra(root: Path) -> None:
    """A second dataset, opened from the browser."""
    from tests.images import photo, save

    for i in range(N_EXTRA):
        save(photo(100 + i, (640, 480)), root / f"frame{i:02d}.png")


def make_zip(path: Path) -> None:
    """Three images and a file that is not one, zipped."""
    import io
    import zipfile

    from PIL import Image

    from tests.images import photo

    with zipfile.ZipFile(path, "w") as zf:
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray(photo(200 + i, (320, 240))).save(buf, "JPEG", quality=90)
            zf.writestr(f"shots/{i}.jpg", buf.getvalue())
        zf.writestr("readme.txt", "not an image")


def classic_scorers() -> str:
    import scorers

    return ",".join(name for name, cls in scorers.registered().items() if cls.__module__ == "scorers.classic")


class App(LiveApp):
    """`python app.py FOLDER` with the fast classic scorers, plus a second folder and a zip to open
    from the page; restartable on the same data dir and port."""

    def __init__(self, folder: Path, extra: Path, base: Path, log: Path) -> None:
        super().__init__([str(folder), "--scorers", classic_scorers()], base, log)
        self.folder, self.extra = folder, extra
        self.zip = folder.parent / "upload.zip"
        make_zip(self.zip)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("ui")
    folder, extra = base / "shoot", base / "extra"
    make_dataset(folder)
    make_extra(extra)
    ARTIFACTS.mkdir(exist_ok=True)
    app = App(folder, extra, base, ARTIFACTS / "review-app.log")
    app.log.write_text("")
    app.start()
    yield app
    app.stop()


# -- reading the page -------------------------------------------------------------------------------
def thumbs(page) -> list[str]:
    """The gallery's thumbnail URLs in order (each names its image's content hash)."""
    return page.eval_on_selector_all("#gallery .thumbnail-item img", "els => els.map(e => e.getAttribute('src'))")


def captions(page) -> list[str]:
    return page.eval_on_selector_all("#gallery .thumbnail-item img", "els => els.map(e => e.alt)")


def counts(page) -> dict[str, int]:
    return {k: int(page.get_attribute(f"#cur-counts .{cls}", "data-n"))
            for k, cls in (("accepted", "acc"), ("rejected", "rej"), ("undecided", "und"))}


def wait_counts(page, accepted: int, rejected: int, timeout: float = 15_000) -> None:
    """Wait for the counts; on a timeout, say what the tab showed instead and any message it popped up."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "([a, r]) => { const c = document.querySelector('#cur-counts');"
            " return c && c.querySelector('.acc').dataset.n == a && c.querySelector('.rej').dataset.n == r; }",
            arg=[accepted, rejected], timeout=timeout)
    except PlaywrightTimeout:
        toasts = page.eval_on_selector_all(".toast-body", "els => els.map(e => e.innerText)")
        raise AssertionError(f"counts never became {accepted} accepted / {rejected} rejected: the tab shows "
                             f"{counts(page)}, messages {toasts}") from None


def selected_id(page) -> int | None:
    value = page.get_attribute(".cur-detail[data-image-id]", "data-image-id")
    return int(value) if value else None


def wait_selected_change(page, before: int | None) -> int:
    page.wait_for_function(
        "b => { const d = document.querySelector('.cur-detail[data-image-id]'); return d && d.dataset.imageId != b; }",
        arg=str(before), timeout=15_000)
    return selected_id(page)


def gallery(page) -> tuple[list[str], list[str]]:
    return thumbs(page), captions(page)


def wait_gallery_change(page, before: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
    """Wait until both the thumbnails and their captions differ from `before`, and then until the
    gallery is still (it swaps captions and image sources in separate steps)."""
    page.wait_for_function(
        "([b, c]) => { const imgs = [...document.querySelectorAll('#gallery .thumbnail-item img')];"
        " const s = JSON.stringify(imgs.map(e => e.getAttribute('src'))), a = JSON.stringify(imgs.map(e => e.alt));"
        " return imgs.length > 0 && s !== b && a !== c; }",
        arg=[json.dumps(before[0]), json.dumps(before[1])], timeout=15_000)
    wait_settled(page)
    return gallery(page)


def wait_sorted(page, metric: str, descending: bool) -> None:
    """Wait until the first ten captions show `metric`, sorted the given way."""
    page.wait_for_function(
        "([m, desc]) => { const alts = [...document.querySelectorAll('#gallery .thumbnail-item img')]"
        ".slice(0, 10).map(e => e.alt); if (alts.length < 10 || !alts.every(a => a.includes(m + ' '))) return false;"
        " const v = alts.map(a => parseFloat(a.split(m + ' ')[1].replace(/,/g, '')));"
        " return v.every((x, i) => i == 0 || (desc ? v[i - 1] >= x : v[i - 1] <= x)); }",
        arg=[metric, descending], timeout=15_000)


def wait_caption(page, index: int, text: str) -> None:
    page.wait_for_function(
        "([i, t]) => { const img = document.querySelectorAll('#gallery .thumbnail-item img')[i];"
        " return img && img.alt.includes(t); }", arg=[index, text], timeout=15_000)


def wait_settled(page, quiet: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the gallery has not changed for `quiet` seconds (the last redraw after scoring
    ends comes from the timer, a moment after the progress says done)."""
    last, since, deadline = gallery(page), time.time(), time.time() + timeout
    while time.time() - since < quiet:
        assert time.time() < deadline, "the gallery kept changing"
        time.sleep(0.2)
        now = gallery(page)
        if now != last:
            last, since = now, time.time()


def watch_progress(page, dataset: str, timeout: float = 90) -> list[tuple[str, int, int]]:
    """(state, done, total) of the progress bar each time it changes, until it says done."""
    seen: list[tuple[str, int, int]] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        bar = page.locator(".cur-progress[data-state]")
        now = (bar.get_attribute("data-state"), int(bar.get_attribute("data-done")),
               int(bar.get_attribute("data-total")))
        if not seen or seen[-1] != now:
            seen.append(now)
        if now[0] == "done":
            return seen
        time.sleep(0.1)
    raise AssertionError(f"scoring {dataset} did not finish: {seen}")


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"review-{name}.png"), full_page=True)


def value(caption: str) -> float:
    return float(re.search(r"#\d+ · (?:[a-z_]+ )?(-?[\d.,e+-]+)", caption).group(1).replace(",", ""))


# -- the journey ------------------------------------------------------------------------------------
def test_review_journey(app, browser) -> None:
    started = time.time()
    step = lambda name: print(f"{time.time() - started:6.1f}s {name}")  # noqa: E731
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.goto(app.url)

    # The app opened its folder and scored it at start; open a second one from the Dataset tab and
    # watch its progress from the start to 100%, every image accounted for.
    page.wait_for_selector(".cur-progress[data-state]", timeout=30_000)
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_label("Open a folder on this machine").fill(str(app.extra))
    page.get_by_role("button", name="Open and score").click()
    page.wait_for_function("() => document.querySelector('.cur-title')?.textContent.includes('extra')")
    seen = watch_progress(page, "extra")
    assert seen[0][0] != "done" and seen[-1] == ("done", N_EXTRA, N_EXTRA), seen
    assert "(100%)" in page.inner_text(".cur-progress")
    page.wait_for_function(f"() => document.querySelectorAll('#gallery .thumbnail-item').length == {N_EXTRA}")
    shot(page, "01-opened-folder-scored")

    # Back to the first folder (already scored at start-up: opening it again is an incremental rescan).
    page.get_by_label("Open a folder on this machine").fill(str(app.folder))
    page.get_by_role("button", name="Open and score").click()
    page.wait_for_function("() => document.querySelector('.cur-title')?.textContent.includes('shoot')")
    state, done, total = watch_progress(page, "shoot")[-1]
    assert state == "done" and done == total and "already scored" in page.inner_text(".cur-progress")
    page.wait_for_function(f"() => document.querySelectorAll('#gallery .thumbnail-item').length == {N_IMAGES + 1}")
    assert counts(page) == {"accepted": 0, "rejected": 0, "undecided": N_IMAGES + 1}
    wait_settled(page)
    assert "unreadable" in captions(page)[-1]   # the broken file: listed last, with a placeholder
    shot(page, "02-scored-gallery")

    step('Sort by a metric')
    # Sort by a metric, both ways.
    page.locator("#cur-sort input").click()
    page.get_by_role("option", name="sharpness", exact=True).click()
    wait_sorted(page, "sharpness", descending=True)
    page.get_by_label("ascending").check()
    wait_sorted(page, "sharpness", descending=False)
    sharp_asc = [value(c) for c in captions(page)[:10]]
    page.get_by_label("descending").check()
    wait_sorted(page, "sharpness", descending=True)
    assert [value(c) for c in captions(page)[:10]] != sharp_asc
    page.locator("#cur-sort input").click()
    page.get_by_role("option", name="ensemble (weighted)").click()
    page.wait_for_function("() => [...document.querySelectorAll('#gallery .thumbnail-item img')]"
                           ".every(e => !e.alt.includes('sharpness'))")

    step('Move a weight slider')
    # Move a weight slider: the ranking changes at once, with no button press.
    wait_settled(page)
    default_order = gallery(page)
    page.get_by_role("tab", name="Weights").click()
    slider = page.locator("#w-sharpness input[type=range]")
    slider.fill("3")
    reranked = wait_gallery_change(page, default_order)[0]
    assert sorted(reranked) == sorted(default_order[0]) and reranked != default_order[0]
    ens = [value(c) for c in captions(page)[:N_IMAGES]]
    assert ens == sorted(ens, reverse=True)
    shot(page, "03-reranked")

    step('Review with keys')
    # Review with keys: A accepts and moves on, R rejects, arrows move.
    page.locator("#gallery .thumbnail-item").nth(0).click()
    first = wait_selected_change(page, None)
    page.locator("#gallery").click(position={"x": 5, "y": 5})   # focus outside any text input
    page.keyboard.press("a")
    wait_counts(page, 1, 0)
    second = wait_selected_change(page, first)       # moved on to the next image
    wait_caption(page, 0, "✓ accepted")
    page.keyboard.press("r")
    wait_counts(page, 1, 1)
    third = wait_selected_change(page, second)
    wait_caption(page, 1, "✕ rejected")
    page.keyboard.press("ArrowRight")
    fourth = wait_selected_change(page, third)
    page.keyboard.press("ArrowLeft")
    assert wait_selected_change(page, fourth) == third

    step('...and with the buttons')
    # ...and with the buttons; then undo twice: each undo selects the image it restored.
    page.locator("#cur-accept").click()
    wait_counts(page, 2, 1)
    assert wait_selected_change(page, third) == fourth
    page.locator("#cur-reject").click()
    wait_counts(page, 2, 2)
    fifth = wait_selected_change(page, fourth)
    shot(page, "04-reviewing")
    page.keyboard.press("u")
    wait_counts(page, 2, 1)
    assert wait_selected_change(page, fifth) == fourth
    assert page.get_attribute(".cur-detail", "data-decision") == "undecided"
    page.locator("#cur-undo").click()
    wait_counts(page, 1, 1)
    assert wait_selected_change(page, fourth) == third
    page.locator("#cur-accept").click()              # accepted again
    wait_counts(page, 2, 1)
    wait_selected_change(page, third)
    wait_settled(page)
    kept = captions(page)
    assert sum("✓ accepted" in c for c in kept) == 2 and sum("✕ rejected" in c for c in kept) == 1

    step('Reload')
    # Reload: the same decisions and the saved weight come back.
    page.reload()
    wait_counts(page, 2, 1)
    page.wait_for_function(f"() => document.querySelectorAll('#gallery .thumbnail-item').length == {N_IMAGES + 1}")
    wait_settled(page)
    assert captions(page) == kept
    assert page.locator("#w-sharpness input[type=range]").input_value() == "3"

    step('Two tabs')
    # Two tabs: each sees the other's decisions; undo in one never undoes the other's.
    other = context.new_page()
    other.goto(app.url)
    wait_counts(other, 2, 1)
    other.locator("#gallery .thumbnail-item").nth(10).click()
    wait_selected_change(other, None)
    other.locator("#cur-reject").click()
    wait_counts(other, 2, 2)
    wait_counts(page, 2, 2)            # the first tab notices within a timer tick
    page.keyboard.press("u")           # undoes the first tab's own last action (an accept)
    wait_counts(page, 1, 2)
    wait_counts(other, 1, 2)
    other.keyboard.press("u")          # the other tab's reject
    wait_counts(other, 1, 1)
    other.close()

    step('Bulk')
    # Bulk: accept the top 5 undecided of the view.
    page.get_by_text("Bulk actions").click()
    fill_number(page, "cur-top-k", "50", "5")
    undecided_in_top5 = sum("✓" not in c and "✕" not in c for c in captions(page)[:5])
    assert undecided_in_top5 == 3   # the first two were decided above
    page.locator("#cur-accept-top").click()
    wait_counts(page, 1 + undecided_in_top5, 1)
    assert all("✓ accepted" in c for c in captions(page)[:5] if "✕" not in c)

    step('The filter tab')
    # The filter tab: threshold with its histogram; only rejected; the distributions.
    page.get_by_role("tab", name="Filter").click()
    page.get_by_label("rejected").check()
    page.wait_for_function("() => document.querySelectorAll('#gallery .thumbnail-item').length == 1")
    page.get_by_label("all", exact=True).first.check()
    page.wait_for_function(f"() => document.querySelectorAll('#gallery .thumbnail-item').length == {N_IMAGES + 1}")
    wait_settled(page)
    scores = sorted(value(c) for c in captions(page) if "unreadable" not in c)
    middle = len(scores) // 2
    threshold = round((scores[middle - 1] + scores[middle]) / 2, 5)   # between two shown values
    expected = sum(v >= threshold for v in scores)
    page.locator("#cur-thr-lo").get_by_role("textbox").fill(str(threshold))
    page.keyboard.press("Enter")
    page.wait_for_selector(".cur-histbox line.cur-thr", state="attached")
    page.wait_for_function(f"() => document.querySelectorAll('#gallery .thumbnail-item').length == {expected}")
    assert all(value(c) >= threshold for c in captions(page))
    assert f"<b>{expected}</b> images match" in page.inner_html(".cur-page")
    page.get_by_text("Distributions").click()
    page.wait_for_selector(".cur-dists .cur-histbox")
    shot(page, "05-filter-and-distributions")

    step('Upload a zip')
    # Opening a dataset the Spaces way: a zip of images (anything else in it is skipped).
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#cur-upload input[type=file]").set_input_files(str(app.zip))
    page.wait_for_function("() => document.querySelector('.cur-title')?.textContent.includes('upload')",
                           timeout=30_000)
    assert watch_progress(page, "upload")[-1] == ("done", 3, 3)
    page.wait_for_function("() => document.querySelectorAll('#gallery .thumbnail-item').length == 3")
    assert "3 images extracted; 1 entries skipped" in page.inner_text("#cur-dataset-info")
    assert counts(page) == {"accepted": 0, "rejected": 0, "undecided": 3}
    context.close()

    step('Restart the app')
    # Restart the app: everything was in DuckDB already.
    app.stop()
    app.start()
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.goto(app.url)
    wait_counts(page, 4, 1, timeout=30_000)
    page.wait_for_function("() => document.querySelector('#w-sharpness input[type=range]').value == '3'")
    shot(page, "06-after-restart")
    context.close()
    assert "Traceback" not in app.log.read_text(), app.log.read_text()[-3000:]
