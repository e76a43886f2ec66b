"""The real dashboard killed with `kill -9` in the middle of scoring 2,000 images, right after a
reviewer's decisions: restarted on the same database (the app itself replays DuckDB's write-ahead log
left behind), it finishes only what was not committed, and afterwards every image is scored exactly
once by every scorer and every decision is there.

The page is the only window into the running server (DuckDB locks the file while it runs), so the
kill point is read from the progress bar, and what was committed at the kill is read from a copy of
the database and WAL files taken while the server is dead. The same run also checks that the
dashboard names the scorers that cannot run and why (CLIP weights are absent in tests; identity has
no reference photos until the Dataset tab gives it a folder, which restarts scoring with it), that two
tabs deciding alternately lose nothing, and that a dataset folder that disappears while reviewing
gets a clear message instead of a broken page.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from storage.db import connect, get_setting
from tests.browser import needs_chromium
from tests.images import many_small
from tests.live_app import LiveApp
from tests.test_ui_browser import (
    classic_scorers,
    counts,
    selected_id,
    wait_counts,
    wait_selected_change,
)

pytestmark = needs_chromium
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

N = 2000
# The cheap classic scorers plus BRISQUE (slow enough at ~80 images/s on two cores that the kill lands
# mid-run), plus a CLIP scorer whose weights tests never have: it must be reported, not silently dropped.
ACTIVE = classic_scorers().split(",") + ["brisque"]
UNAVAILABLE = ("aesthetic", "identity")


def server_for(folder: Path, db: Path, base: Path) -> LiveApp:
    """`python app.py FOLDER --db DB` with the scorers of this test, its data dir and home in tmp."""
    return LiveApp([str(folder), "--db", str(db), "--scorers", ",".join([*ACTIVE, *UNAVAILABLE])], base,
                   base / "app.log")


@pytest.fixture
def servers():
    """The servers a test starts; any still running when it ends (a failed assertion) are killed."""
    started: list[LiveApp] = []
    yield started
    for server in started:
        server.kill()


def progress(page) -> tuple[str, int, int, int]:
    """(state, done, total, unchanged) as the progress bar shows them."""
    bar = page.locator(".cur-progress[data-state]")
    return (bar.get_attribute("data-state"), int(bar.get_attribute("data-done")),
            int(bar.get_attribute("data-total")), int(bar.get_attribute("data-unchanged")))


def wait_done(page, timeout: float = 120) -> None:
    """Wait until the progress bar says done; fail with the states it went through."""
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        now = progress(page)
        if not seen or seen[-1] != now:
            seen.append(now)
        if now[0] == "done":
            return
        assert now[0] in ("loading", "scanning", "scoring"), (now, page.inner_text(".cur-progress"))
        time.sleep(0.2)
    raise AssertionError(f"scoring did not finish in {timeout} s: {seen[:3]} ... {seen[-3:]}")


def unavailable(page, scorer: str) -> str:
    """The progress area's line about a scorer that cannot run; it must be visible, not folded away."""
    note = page.locator(f".cur-unavailable li[data-scorer={scorer}]")
    assert note.is_visible()
    return note.inner_text()


def selected_path(page) -> str:
    return page.get_attribute(".cur-detail .cur-path", "title")


def decide_by_key(page, key: str, made: dict[str, str]) -> None:
    """Press A or R on the selected image; remember its path and the decision; wait until recorded."""
    ensure_undecided(page)
    path, before = selected_path(page), selected_id(page)
    acc, rej = counts(page)["accepted"], counts(page)["rejected"]
    page.keyboard.press(key)
    decision = {"a": "accepted", "r": "rejected"}[key]
    wait_counts(page, acc + (decision == "accepted"), rej + (decision == "rejected"))
    wait_selected_change(page, before)
    made[path] = decision


def decide_by_button(page, decision: str, made: dict[str, str]) -> None:
    ensure_undecided(page)
    path, before = selected_path(page), selected_id(page)
    acc, rej = counts(page)["accepted"], counts(page)["rejected"]
    page.locator("#cur-accept" if decision == "accepted" else "#cur-reject").click()
    wait_counts(page, acc + (decision == "accepted"), rej + (decision == "rejected"))
    wait_selected_change(page, before)
    made[path] = decision


def ensure_undecided(page) -> None:
    """Move on from a selected image someone already decided (the ranking moves while scoring)."""
    if page.get_attribute(".cur-detail", "data-decision") != "undecided":
        at = page.eval_on_selector_all("#gallery .thumbnail-item",
                                       "els => els.findIndex(e => e.classList.contains('selected'))")
        select(page, at + 1)


def select(page, index: int) -> None:
    """Click the first undecided thumbnail from the index-th on; wait until the detail panel shows it."""
    for i in range(index, index + 20):
        item = page.locator("#gallery .thumbnail-item").nth(i)
        if "✓" in item.locator("img").get_attribute("alt") or "✕" in item.locator("img").get_attribute("alt"):
            continue
        if "selected" not in (item.get_attribute("class") or ""):
            before = selected_id(page)
            item.click()
            wait_selected_change(page, before)
        assert page.get_attribute(".cur-detail", "data-decision") == "undecided"
        return
    raise AssertionError(f"no undecided image among thumbnails {index}..{index + 19}")


def test_kill_minus_nine_mid_scoring_then_restart_loses_nothing(tmp_path: Path, browser, servers) -> None:
    started = time.time()
    step = lambda name: print(f"{time.time() - started:6.1f}s {name}")  # noqa: E731
    folder, db = tmp_path / "frames", tmp_path / "db" / "curator.duckdb"
    assert len(many_small(folder, N)) == N
    server = server_for(folder, db, tmp_path)
    servers.append(server)
    step("generated")
    server.start()
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.goto(server.url)

    step("page open")
    # Scoring is under way: some images are scored, the gallery shows them.
    page.wait_for_function(
        "() => { const b = document.querySelector('.cur-progress[data-state]');"
        " return b && b.dataset.state == 'scoring' && +b.dataset.done > 0; }", timeout=60_000)
    # The scorers that cannot run are named, with their reasons, in plain view.
    assert unavailable(page, "aesthetic").startswith("⚠ aesthetic: unavailable: weights clip-vit-l-14-openai not in "
                                                     "cache and HF_HUB_OFFLINE=1")
    assert unavailable(page, "identity") == ("⚠ identity: unavailable: no reference photos given "
                                             "(score with --reference DIR)")

    step("scoring seen")
    # Review a few images with the keyboard while scoring goes on, then kill the server at once.
    made: dict[str, str] = {}
    page.wait_for_selector("#gallery .thumbnail-item img")
    select(page, 0)
    page.locator("#gallery").click(position={"x": 5, "y": 5})   # focus outside any text input
    for key in "araar":
        decide_by_key(page, key, made)
    step("decided")
    state, shown_done, total, _ = progress(page)
    server.kill()
    killed_at = time.time()
    assert state == "scoring" and total == N and 0 < shown_done < N, (state, shown_done, total)
    assert len(made) == 5

    step("killed")
    # What the kill left: a database with its write-ahead log, not yet replayed. A copy of both files
    # tells what was committed; the original is left for the restarted app to recover.
    wal = db.with_name(db.name + ".wal")
    assert wal.exists() and wal.stat().st_size > 0
    copy = tmp_path / "at-kill"
    copy.mkdir()
    shutil.copy2(db, copy / db.name)
    shutil.copy2(wal, copy / wal.name)
    con = connect(copy / db.name)
    committed = {(i, s): t for i, s, t in con.execute("SELECT image_id, scorer, scored_at FROM scorer_runs").fetchall()}
    ok_at_kill = con.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchall()[0][0]
    decided_at_kill = dict(con.execute(
        "SELECT i.path, c.decision FROM current_decisions c JOIN images i ON i.id = c.image_id").fetchall())
    con.close()
    assert shown_done <= ok_at_kill < N and len(committed) == ok_at_kill * len(ACTIVE)
    assert decided_at_kill == made                  # every decision committed the moment it was made
    made_before_kill = len(made)

    step("copy checked")
    # Restart on the same database: it finishes exactly the images not committed before the kill.
    server.start()
    page = context.new_page()
    page.goto(server.url)
    wait_counts(page, 3, 2, timeout=30_000)          # the decisions are back before scoring ends
    wait_done(page)
    step("rescored")
    state, done, total, unchanged = progress(page)
    assert (state, done, total, unchanged) == ("done", N - ok_at_kill, N - ok_at_kill, ok_at_kill)
    assert "(100%)" in page.inner_text(".cur-progress")
    assert unavailable(page, "aesthetic").startswith("⚠ aesthetic: unavailable: weights")

    step("two tabs")
    # Two tabs reviewing the same dataset at once, alternately, on different images: nothing lost.
    other = context.new_page()
    other.goto(server.url)
    wait_counts(other, 3, 2)
    select(page, 10)
    select(other, 30)
    page.locator("#gallery").click(position={"x": 5, "y": 5})
    expected = {"accepted": 3, "rejected": 2}
    for tab, decision in [(page, "accepted"), (other, "rejected"), (page, "rejected"), (other, "accepted")]:
        before = len(made)
        decide_by_button(tab, decision, made)
        assert len(made) == before + 1, "a tab decided an image decided before"
        expected[decision] += 1
        wait_counts(page, expected["accepted"], expected["rejected"])   # each tab sees the other's work
        wait_counts(other, expected["accepted"], expected["rejected"])
    # (Before the reloads below: a box typed into while a reloaded page is still loading can be
    # cleared by the load, which fills it with the stored reference.)
    step("reference")
    # Reference photos for the identity scorer, set from the Dataset tab: scoring starts again with
    # them; identity now gets past "no reference photos" to the face weights tests never have.
    refs = tmp_path / "refs"
    many_small(refs, 2)
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#cur-reference textarea, #cur-reference input").first.fill(str(refs))
    page.locator("#cur-set-reference").click()
    page.wait_for_function(
        "() => document.querySelector('.cur-unavailable li[data-scorer=identity]')?.textContent"
        ".includes('insightface-buffalo-l not in cache')", timeout=30_000)
    wait_done(page)
    assert str(refs) in page.inner_text("#cur-dataset-info")

    page.reload()
    other.reload()
    wait_counts(page, expected["accepted"], expected["rejected"])
    wait_counts(other, expected["accepted"], expected["rejected"])

    step("folder gone")
    # The dataset folder disappears while reviewing: the page says so; reviewing goes on.
    gone = folder.with_name("frames-unmounted")
    folder.rename(gone)
    page.wait_for_function("() => document.querySelector('.cur-progress')?.textContent.includes('is gone')",
                           timeout=15_000)
    assert "decisions are kept" in page.inner_text(".cur-progress")   # and the app says so
    select(page, 40)   # never previewed: its preview is the placeholder tile now
    decide_by_button(page, "rejected", made)
    expected["rejected"] += 1
    wait_counts(other, expected["accepted"], expected["rejected"])
    gone.rename(folder)
    context.close()

    step("stopping")
    assert server.stop(wait=30), "the app did not stop on SIGINT within 30 s"
    assert server.proc.returncode == 0
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]

    step("db checks")
    # The database: every image once, scored once by every scorer, committed work not redone, every
    # decision there with the right action.
    con = connect(db, read_only=True)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    assert q("SELECT count(*), count(DISTINCT path), count(*) FILTER (WHERE status = 'ok' AND present) FROM images") \
        == [(N, N, N)]
    assert q("SELECT count(*), count(DISTINCT image_id) FROM scores") == [(N, N)]
    runs = {(i, s): t for i, s, t in q("SELECT image_id, scorer, scored_at FROM scorer_runs")}
    assert len(runs) == N * len(ACTIVE) and {s for _, s in runs} == set(ACTIVE)
    assert q("SELECT count(*) FROM (SELECT image_id FROM scorer_runs GROUP BY image_id HAVING count(*) <> "
             f"{len(ACTIVE)})") == [(0,)]
    assert all(runs[k] == t for k, t in committed.items())       # nothing committed before the kill was redone
    metrics = [m for (m,) in q("SELECT name FROM metrics WHERE scorer IN ({})".format(
        ",".join(f"'{s}'" for s in ACTIVE)))]
    missing = q("SELECT " + ", ".join(f'count(*) - count("{m}")' for m in metrics) + " FROM scores")[0]
    assert not any(missing), dict(zip(metrics, missing))          # every image has every value
    decided = dict(q("SELECT i.path, c.decision FROM current_decisions c JOIN images i ON i.id = c.image_id"))
    assert decided == made
    assert q("SELECT count(*) FROM decisions") == [(len(made),)]  # one row per click, none doubled
    assert get_setting(con, "identity_reference") == str(refs.resolve())   # kept with the dataset
    con.close()
    print(f"\nkill at {shown_done} shown / {ok_at_kill} committed of {N}; decisions kept "
          f"{len(decided_at_kill)}/{made_before_kill} at the kill, {len(decided)}/{len(made)} at the end; "
          f"total {time.time() - started:.1f}s (killed at {killed_at - started:.1f}s)")
