"""Dashboard markup: numbers people read, and file names that never become markup."""
import re
import time
from datetime import datetime

import pytest

from curator.job import Progress
from curator.presets import PRESETS, preset_weights
from curator.render import caption, detail_html, fmt, histogram_block, histogram_svg, progress_html, values_html
from storage.browse import Histogram, Value
from storage.scores import MetricInfo

EVIL = '<img src=x onerror="alert(1)">.jpg'


@pytest.mark.parametrize("value,text", [(None, "–"), (float("nan"), "–"), (0.0, "0"), (0.123456, "0.1235"),
                                        (12345.6, "12,346"), (0.0000123, "1.23e-05"), (-3.5, "-3.5")])
def test_fmt(value, text) -> None:
    assert fmt(value) == text


def test_file_names_and_errors_are_escaped() -> None:
    record = {"image_id": 7, "path": f"dir/{EVIL}", "status": "error", "error": "<b>bad</b>", "width": None,
              "height": None, "bytes": 10, "format": None, "sha256": None, "mtime": 0.0, "present": True,
              "decision": "undecided", "decided_at": None}
    html = detail_html(record)
    assert "<img" not in html and "&lt;img" in html and "<b>bad" not in html
    p = Progress(state="failed", total=3, done=1, message="<script>x</script>", unavailable={"face": "<i>no</i>"})
    assert "<script>" not in progress_html(p) and "<i>no" not in progress_html(p)


def test_captions_show_rank_sort_value_and_decision() -> None:
    row = {"path": "a/b.jpg", "status": "ok", "ensemble": 0.81234, "sharpness": 0.5, "decision": "accepted"}
    assert caption(3, row, "ensemble") == "#3 · 0.8123 · ✓ accepted"
    assert caption(3, row, "sharpness") == "#3 · sharpness 0.5 · ✓ accepted"
    assert caption(1, {**row, "decision": "undecided"}, "path") == "#1 · b.jpg"
    assert "unreadable" in caption(9, {**row, "status": "error", "decision": "rejected"}, "ensemble")


def test_progress_reads_done_total_rate_eta_and_errors() -> None:
    started = time.time() - 10
    p = Progress(state="scoring", total=100, done=25, errors=2, started=started)
    html = progress_html(p)
    assert "25 / 100 images (25%)" in html and "img/s" in html and "ETA" in html and "2 errors" in html
    assert 'data-state=\'scoring\'' in html and "width:25.0%" in html
    done = progress_html(Progress(state="done", total=4, done=4, started=started, finished=started + 2))
    assert "(100%)" in done and "in 2 s" in done and "width:100.0%" in done
    assert progress_html(None).count("Not scoring") == 1


def test_values_colour_percentiles_by_how_good_they_are() -> None:
    metrics = {"noise": MetricInfo("noise", "n", None, None, False, 1.0, "noise <sigma>")}
    html = values_html([Value("ensemble", 0.5, 50.0), Value("noise", 2.0, 90.0), Value("noise", None, None)],
                       metrics, {"noise": 2.0})
    hues = [int(h) for h in re.findall(r"hsl\((\d+),", html)]
    assert hues == [60, 12]   # the ensemble at p50 is middling; noise at p90 is bad (lower is better)
    assert "noise &lt;sigma&gt;" in html and "p90" in html


def test_histogram_draws_bars_and_the_threshold() -> None:
    h = Histogram("sharpness", 0.0, 1.0, [0, 5, 10, 0], missing=2)
    svg = histogram_svg(h, lo=0.5)
    assert svg.count("<rect x=") == 2                  # a bar per non-empty bin
    assert "class='cur-out' x='0.0' y='4' width='160.0'" in svg   # below the minimum: greyed
    assert "cur-thr" in svg and "x1='160.0'" in svg
    block = histogram_block(h, MetricInfo("sharpness", "s", 0.0, 1.0, True, 1.0), (0.5, None))
    assert "≥ 0.5" in block and "2 without" in block and "↑" in block
    assert "cur-thr" not in histogram_svg(h)


def test_detail_shows_decision_time_and_size() -> None:
    record = {"image_id": 1, "path": "x.jpg", "status": "ok", "error": None, "width": 1920, "height": 1080,
              "bytes": 2_500_000, "format": "JPEG", "sha256": "ab" * 32, "mtime": 0.0, "present": True,
              "decision": "accepted", "decided_at": datetime(2026, 11, 23, 10, 5)}
    html = detail_html(record, rank=12)
    assert "1,920 × 1,080 px" in html and "2.4 MB" in html and "2026-11-23 10:05" in html
    assert "rank #12" in html and "data-decision='accepted'" in html


def test_presets_match_metric_patterns_and_keep_other_defaults() -> None:
    metrics = [MetricInfo("sharpness", "s", 0, 1, True, 1.0), MetricInfo("face_quality", "f", 0, 1, True, 1.0),
               MetricInfo("identity_similarity", "i", -1, 1, True, 1.0), MetricInfo("aesthetic", "a", 0, 10, True, 1.0)]
    portrait = preset_weights("Portrait / character", metrics)
    assert portrait == {"sharpness": 1.0, "face_quality": 2.0, "identity_similarity": 3.0, "aesthetic": 0.5}
    scenery = preset_weights("Style / scenery", metrics)
    assert scenery["face_quality"] == scenery["identity_similarity"] == 0.0 and scenery["aesthetic"] == 2.0
    assert set(PRESETS) >= {"Portrait / character", "Style / scenery"}
    with pytest.raises(ValueError, match="unknown preset"):
        preset_weights("nope", metrics)
