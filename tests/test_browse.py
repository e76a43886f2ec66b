"""The dashboard's queries on a real DuckDB file: pages, re-ranking, filters, bulk picks, histograms,
percentiles, and the normalised cache they read."""
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from storage import decisions
from storage.browse import (
    HISTOGRAM_BINS,
    View,
    distributions,
    ensemble_distribution,
    image_record,
    image_row,
    page,
    review_version,
    top_undecided,
    undecided_worse_than,
    values_of,
)
from storage.db import connect
from storage.images import sync_scan
from storage.ranking import CACHE_DB, cache_state, ensure_normalised, ranked, refresh_view
from storage.scores import ImageResult, MetricInfo, sync_metrics, write_results

METRICS = [
    MetricInfo("quality", "q", 0.0, 1.0, True, 1.0),      # closed range: linear
    MetricInfo("noise", "n", None, None, False, 1.0),     # open, lower is better: percentile, flipped
    MetricInfo("info", "n", None, None, True, 0.0),       # shown, not ranked by default
]
N_OK = 30


def _scan(con, paths: list[str]) -> None:
    sync_scan(con, pd.DataFrame({"path": paths, "bytes": [100] * len(paths), "mtime": [1.0] * len(paths),
                                 "error": [None] * len(paths)}).astype({"bytes": "Int64", "error": "object"}))


def _score(con, values: dict[str, tuple[float | None, float | None, float | None]]) -> None:
    ids = dict(con.execute("SELECT path, id FROM images").fetchall())
    results = []
    for path, (q, n, info) in values.items():
        r = ImageResult(ids[path], f"sha-{path}", "ok", width=10, height=10)
        r.scores = {"q": {"quality": q}, "n": {"noise": n, "info": info}}
        results.append(r)
    write_results(con, results, {"q": "1", "n": "1"}, {"q": ("quality",), "n": ("noise", "info")})


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """30 scored images with varied values (one without a noise value), one broken, one pending."""
    c = connect(tmp_path / "b.duckdb")
    sync_metrics(c, METRICS)
    refresh_view(c)
    paths = [f"img{i:02d}.jpg" for i in range(N_OK)] + ["broken.jpg", "pending.jpg"]
    _scan(c, paths)
    rng = np.random.default_rng(3)
    values = {p: (float(rng.random()), float(rng.normal(5, 2)), float(rng.integers(0, 4))) for p in paths[:N_OK]}
    values["img07.jpg"] = (0.5, None, 1.0)
    _score(c, values)
    broken = c.execute("SELECT id FROM images WHERE path = 'broken.jpg'").fetchone()[0]
    write_results(c, [ImageResult(broken, "sha-broken", "error", "truncated")], {}, {})
    ensure_normalised(c)
    return c


def id_of(con, path: str) -> int:
    return con.execute("SELECT id FROM images WHERE path = ?", [path]).fetchone()[0]


@pytest.mark.parametrize("weights", [{}, {"quality": 0.0}, {"noise": 0.0, "info": 2.5}, {"quality": 3.0}])
def test_page_ranks_exactly_like_ranked(con, weights) -> None:
    expected = ranked(con, weights)
    got = page(con, View(weights=weights, status="ok"), 0, 100)
    assert got.total == N_OK
    assert list(got.rows["path"]) == list(expected["path"])
    assert np.allclose(got.rows["ensemble"], expected["ensemble"], equal_nan=True)


def test_moving_a_weight_reorders_the_first_page(con) -> None:
    by_quality = page(con, View(weights={"noise": 0.0}), 0, 5).rows
    by_noise = page(con, View(weights={"quality": 0.0}), 0, 5).rows
    assert list(by_quality["quality"]) == sorted(by_quality["quality"], reverse=True)
    assert list(by_noise["noise"]) == sorted(by_noise["noise"])  # lower noise is better
    assert list(by_quality["path"]) != list(by_noise["path"])


def test_pages_tile_the_whole_ordering_with_errors_and_pending_last(con) -> None:
    everything = page(con, View(), 0, 1000)
    assert everything.total == N_OK + 2
    assert set(everything.rows["path"].iloc[-2:]) == {"broken.jpg", "pending.jpg"}
    assert everything.rows["ensemble"].iloc[-2:].isna().all()
    tiles = pd.concat([page(con, View(), offset, 7).rows for offset in range(0, N_OK + 2, 7)])
    assert list(tiles["path"]) == list(everything.rows["path"])
    assert page(con, View(), 1000, 7).rows.empty and page(con, View(), 1000, 7).total == N_OK + 2


def test_sort_by_metric_either_way_keeps_missing_values_last(con) -> None:
    asc = page(con, View(sort="noise", descending=False, status="ok"), 0, 100).rows
    desc = page(con, View(sort="noise", descending=True, status="ok"), 0, 100).rows
    for rows, reverse in ((asc, False), (desc, True)):
        assert rows["path"].iloc[-1] == "img07.jpg"   # no noise value
        known = list(rows["noise"].iloc[:-1])
        assert known == sorted(known, reverse=reverse)
    by_path = page(con, View(sort="path", descending=False), 0, 3).rows
    assert list(by_path["path"]) == ["broken.jpg", "img00.jpg", "img01.jpg"]


def test_filters_by_status_threshold_and_decision(con) -> None:
    assert list(page(con, View(status="error"), 0, 10).rows["path"]) == ["broken.jpg"]
    assert list(page(con, View(status="pending"), 0, 10).rows["path"]) == ["pending.jpg"]
    high = page(con, View(thresholds={"quality": (0.5, None)}), 0, 100)
    assert high.total == int((ranked(con)["quality"] >= 0.5).sum())
    assert (high.rows["quality"] >= 0.5).all()
    band = page(con, View(thresholds={"noise": (4.0, 6.0), "ensemble": (None, 0.9)}), 0, 100).rows
    assert band["noise"].between(4.0, 6.0).all() and (band["ensemble"] <= 0.9).all()
    assert "img07.jpg" not in set(band["path"])  # no value: does not pass a threshold on it

    first, second = id_of(con, "img00.jpg"), id_of(con, "img01.jpg")
    decisions.decide(con, [first], "accepted", session="tab-a")
    decisions.decide(con, [second], "rejected", session="tab-b")
    # decisions are joined live: no cache refresh is needed to see them
    assert list(page(con, View(decision="accepted"), 0, 10).rows["image_id"]) == [first]
    assert list(page(con, View(decision="rejected"), 0, 10).rows["image_id"]) == [second]
    undecided = page(con, View(decision="undecided"), 0, 100)
    assert undecided.total == N_OK + 2 - 2 and set(undecided.rows["decision"]) == {"undecided"}


def test_unknown_names_are_refused(con) -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        page(con, View(sort="sharpnes"))
    with pytest.raises(ValueError, match="unknown metric"):
        page(con, View(weights={"nope": 1.0}))
    with pytest.raises(ValueError, match="decision filter"):
        page(con, View(decision="maybe"))


def test_bulk_picks_leave_decided_images_alone(con) -> None:
    view = View(status="ok")
    top = list(page(con, view, 0, 5).rows["image_id"])
    decisions.decide(con, [top[1]], "rejected", session="tab-a")
    assert top_undecided(con, view, 5) == [i for i in top if i != top[1]]

    rows = page(con, view, 0, 100).rows
    worse = set(undecided_worse_than(con, view, "quality", 0.3))
    assert worse == set(rows[(rows["quality"] < 0.3) & (rows["image_id"] != top[1])]["image_id"])
    noisy = set(undecided_worse_than(con, view, "noise", 6.0))   # lower is better: worse = above
    assert noisy == set(rows[(rows["noise"] > 6.0) & (rows["image_id"] != top[1])]["image_id"])
    low = set(undecided_worse_than(con, view, "ensemble", 0.5))
    assert low == set(rows[(rows["ensemble"] < 0.5) & (rows["image_id"] != top[1])]["image_id"])


def test_distributions_give_histograms_of_every_ok_value(con) -> None:
    dists = distributions(con)
    h = {name: d.histogram for name, d in dists.items()}
    table = ranked(con)
    assert set(dists) == {"quality", "noise", "info"}
    assert (h["quality"].lo, h["quality"].hi) == (0.0, 1.0)               # declared range
    assert h["noise"].lo == pytest.approx(table["noise"].min())           # open: the data's range
    assert h["noise"].hi == pytest.approx(table["noise"].max())
    assert sum(h["noise"].counts) == N_OK - 1 and h["noise"].missing == 1
    assert sum(h["quality"].counts) == N_OK and len(h["quality"].edges) == HISTOGRAM_BINS + 1
    assert h["quality"].counts == list(np.histogram(table["quality"], bins=HISTOGRAM_BINS, range=(0, 1))[0])
    ensemble = ensemble_distribution(con, {"noise": 0.0})
    assert sorted(ensemble.values) == pytest.approx(sorted(ranked(con, {"noise": 0.0})["ensemble"]))
    assert sum(ensemble.histogram.counts) == N_OK


def test_image_values_give_percentiles_in_the_dataset(con) -> None:
    table = ranked(con)
    best = table.iloc[0]
    dists = {"ensemble": ensemble_distribution(con), **distributions(con)}
    columns = ["ensemble", "quality", "noise", "info"]
    values = {v.column: v for v in values_of(image_row(con, int(best["image_id"])), dists, columns)}
    assert values["ensemble"].value == pytest.approx(best["ensemble"])
    assert values["ensemble"].percentile == pytest.approx((N_OK - 0.5) / N_OK * 100)
    q = best["quality"]
    expected = ((table["quality"] < q).sum() + 0.5 * (table["quality"] == q).sum()) / N_OK * 100
    assert values["quality"].percentile == pytest.approx(expected)
    info = table["info"]   # few distinct values: ties count half
    assert values["info"].percentile == pytest.approx(
        ((info < best["info"]).sum() + 0.5 * (info == best["info"]).sum()) / N_OK * 100)
    missing = {v.column: v for v in values_of(image_row(con, id_of(con, "img07.jpg")), dists, columns)}
    assert missing["noise"].value is None and missing["noise"].percentile is None
    broken = {v.column: v for v in values_of(image_row(con, id_of(con, "broken.jpg")), dists, columns)}
    assert broken["ensemble"].value is None and broken["quality"].value is None
    assert image_row(con, 10**9) == {}


def test_image_record_and_review_version(con) -> None:
    image = id_of(con, "img03.jpg")
    before = review_version(con)
    decisions.decide(con, [image], "accepted", session="t")
    record = image_record(con, image)
    assert record["path"] == "img03.jpg" and record["decision"] == "accepted" and record["width"] == 10
    assert review_version(con) > before
    assert image_record(con, 10**9) is None


def test_cache_is_rebuilt_when_scores_change_unless_fresh_enough(con) -> None:
    built = cache_state(con)
    assert ensure_normalised(con) == built        # nothing changed: no rebuild
    _scan(con, [f"img{i:02d}.jpg" for i in range(N_OK)] + ["broken.jpg", "pending.jpg"])
    _score(con, {"pending.jpg": (1.0, -100.0, 0.0)})   # a new best image
    kept = ensure_normalised(con, max_staleness=3600)
    assert kept == built
    assert page(con, View(status="ok"), 0, 1).rows["path"].iloc[0] != "pending.jpg"
    fresh = ensure_normalised(con)
    assert fresh.version != built.version
    assert page(con, View(status="ok"), 0, 1).rows["path"].iloc[0] == "pending.jpg"


def test_a_metric_declared_after_the_cache_was_built_is_not_an_error(con) -> None:
    sync_metrics(con, [*METRICS, MetricInfo("late", "l", 0.0, 1.0, True, 1.0)])
    stale = ensure_normalised(con, max_staleness=3600)    # kept: built moments ago
    assert "late" not in {m.name for m in stale.metrics}
    assert page(con, View(weights={"late": 2.0}), 0, 3).total == N_OK + 2
    assert "late" in {m.name for m in ensure_normalised(con).metrics}
    assert "late" in page(con, View(sort="late"), 0, 3).rows.columns


def test_threads_first_using_a_connection_at_once_all_get_the_cache(tmp_path: Path) -> None:
    """Two browser tabs loading together: every thread's first use attaches the cache database
    without DuckDB refusing one of them ('Catalog write-write conflict')."""
    con = connect(tmp_path / "t.duckdb")
    for _ in range(20):
        con.execute(f"DETACH DATABASE IF EXISTS {CACHE_DB}")
        start = threading.Barrier(8)

        def first_use(start: threading.Barrier = start) -> None:
            start.wait()
            cache_state(con)

        with ThreadPoolExecutor(8) as pool:
            for f in [pool.submit(first_use) for _ in range(8)]:
                f.result()
    assert cache_state(con) is None and ensure_normalised(con).counts == {}
