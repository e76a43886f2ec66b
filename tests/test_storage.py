"""Storage on a real DuckDB file: migrations, scan sync, score writes, ranking, decisions."""
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from storage import decisions
from storage.db import MIGRATIONS, DatabaseError, connect, schema_version
from storage.images import sync_scan, work_list
from storage.ranking import ranked, refresh_view, save_weights, saved_weights
from storage.scores import ImageResult, MetricInfo, sync_metrics, write_results

METRICS = [
    MetricInfo("quality", "q", 0.0, 1.0, True, 1.0),     # closed range: linear
    MetricInfo("noise", "n", None, None, False, 1.0),    # open, lower is better: percentile, flipped
    MetricInfo("info", "n", None, None, True, 0.0),      # shown, not ranked
]


def scan_rows(paths: list[str], size: int = 100) -> pd.DataFrame:
    return pd.DataFrame({"path": paths, "bytes": [size] * len(paths), "mtime": [1.0] * len(paths),
                         "error": [None] * len(paths)}).astype({"bytes": "Int64", "error": "object"})


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = connect(tmp_path / "db" / "t.duckdb")
    sync_metrics(c, METRICS)
    refresh_view(c)
    return c


def ids(con) -> dict[str, int]:
    return dict(con.execute("SELECT path, id FROM images").fetchall())


def score(con, values: dict[str, tuple[float | None, float | None]]) -> None:
    image_ids = ids(con)
    results = []
    for path, (q, n) in values.items():
        r = ImageResult(image_ids[path], f"sha-{path}", "ok", width=10, height=10)
        r.scores = {"q": {"quality": q}, "n": {"noise": n, "info": 1.0}}
        results.append(r)
    write_results(con, results, {"q": "1", "n": "1"}, {"q": ("quality",), "n": ("noise", "info")})


def test_migrations_apply_once_and_refuse_newer(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    connect(path).close()
    con = connect(path)  # second open: nothing to apply
    assert schema_version(con) == len(MIGRATIONS)
    con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(DatabaseError, match="newer"):
        connect(path)


def test_scan_sync_marks_new_changed_and_missing(con) -> None:
    s = sync_scan(con, scan_rows(["a.png", "b.png"]))
    assert (s.new, s.changed, s.missing) == (2, 0, 0)
    score(con, {"a.png": (0.5, 1.0), "b.png": (0.5, 1.0)})
    assert work_list(con, {"q": "1", "n": "1"}) == []
    rows = scan_rows(["a.png", "c.png"])
    rows.loc[0, "bytes"] = 101  # a.png changed on disk
    s = sync_scan(con, rows)
    assert (s.new, s.changed, s.missing) == (1, 1, 1)
    todo = {w.path: w for w in work_list(con, {"q": "1", "n": "1"})}
    assert set(todo) == {"a.png", "c.png"}
    assert todo["a.png"].runs["q"] == ("1", "sha-a.png")  # old run kept: same bytes won't re-score
    assert con.execute("SELECT present FROM images WHERE path = 'b.png'").fetchone()[0] is False


def test_new_scorer_version_puts_images_back_on_the_work_list(con) -> None:
    sync_scan(con, scan_rows(["a.png"]))
    score(con, {"a.png": (0.5, 1.0)})
    assert [w.path for w in work_list(con, {"q": "2", "n": "1"})] == ["a.png"]


def test_ranking_normalises_flips_and_weights(con) -> None:
    sync_scan(con, scan_rows(["a.png", "b.png", "c.png", "d.png"]))
    score(con, {"a.png": (0.9, 5.0), "b.png": (0.2, 1.0), "c.png": (0.5, 3.0), "d.png": (None, 2.0)})
    table = ranked(con).set_index("path")
    # noise is open and lower-is-better: percentiles 1 - [1, 0, 2/3, 1/3] over a..d
    expected = {"a.png": (0.9 + 0.0) / 2, "b.png": (0.2 + 1.0) / 2, "c.png": (0.5 + 1 / 3) / 2,
                "d.png": 2 / 3}  # d has no quality: the mean is over the metrics it has
    for path, value in expected.items():
        assert table.loc[path, "ensemble"] == pytest.approx(value)
    assert list(ranked(con, {"noise": 0.0}).path[:3]) == ["a.png", "c.png", "b.png"]
    assert list(ranked(con, {"quality": 0.0}).path[:2]) == ["b.png", "d.png"]
    view = dict(con.execute("SELECT path, ensemble FROM image_scores").fetchall())
    assert view["a.png"] == pytest.approx(expected["a.png"])


def test_ranking_rejects_unknown_or_negative_weights(con) -> None:
    with pytest.raises(ValueError, match="unknown metric 'sharpnes'"):
        ranked(con, {"sharpnes": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        ranked(con, {"quality": -1.0})


def test_broken_images_have_reason_and_no_ensemble(con) -> None:
    sync_scan(con, scan_rows(["a.png", "bad.png"]))
    score(con, {"a.png": (0.5, 1.0)})
    write_results(con, [ImageResult(ids(con)["bad.png"], "sha", "error", "empty file (0 bytes)")], {}, {})
    view = con.execute("SELECT path, status, error, ensemble FROM image_scores ORDER BY path").fetchall()
    assert view[1] == ("bad.png", "error", "empty file (0 bytes)", None)
    assert list(ranked(con).path) == ["a.png"]


def test_nan_and_inf_scores_are_stored_as_null(con) -> None:
    sync_scan(con, scan_rows(["a.png"]))
    score(con, {"a.png": (float("nan"), float("inf"))})
    assert con.execute("SELECT quality, noise FROM scores").fetchone() == (None, None)


def test_weights_are_saved_with_the_dataset(con) -> None:
    save_weights(con, {"quality": 2.0, "noise": 0.5})
    assert saved_weights(con) == {"quality": 2.0, "noise": 0.5}


def test_embeddings_are_stored(con) -> None:
    sync_scan(con, scan_rows(["a.png"]))
    r = ImageResult(ids(con)["a.png"], "sha", "ok")
    r.embeddings = {"m": np.arange(4, dtype=np.float32)}
    write_results(con, [r], {}, {})
    assert con.execute("SELECT model, vector FROM embeddings").fetchone() == ("m", [0.0, 1.0, 2.0, 3.0])


def test_decisions_append_and_undo_in_layers(con) -> None:
    sync_scan(con, scan_rows(["a.png", "b.png", "c.png"]))
    a, b, c = (ids(con)[p] for p in ("a.png", "b.png", "c.png"))
    decisions.decide(con, [a], "accepted", session="tab1")
    decisions.decide(con, [a, b], "rejected", session="tab1")
    decisions.decide(con, [c], "accepted", session="tab2")
    assert decisions.current(con) == {a: "rejected", b: "rejected", c: "accepted"}
    assert sorted(decisions.undo(con, session="tab1")) == [a, b]      # tab1's bulk reject
    assert decisions.current(con) == {a: "accepted", b: "undecided", c: "accepted"}
    assert decisions.undo(con, session="tab1") == [a]                  # then its first accept
    assert decisions.current(con)[a] == "undecided"
    assert decisions.undo(con, session="tab1") == []                   # nothing left for tab1
    assert decisions.current(con)[c] == "accepted"                     # tab2 untouched
    assert decisions.counts(con) == {"accepted": 1, "rejected": 0, "undecided": 2}
    with pytest.raises(ValueError):
        decisions.decide(con, [a], "maybe")


def test_decisions_from_two_connections_both_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "d.duckdb"
    con = connect(path)
    sync_scan(con, scan_rows(["a.png", "b.png"]))
    a, b = ids(con)["a.png"], ids(con)["b.png"]
    tab1, tab2 = con.cursor(), con.cursor()
    decisions.decide(tab1, [a], "accepted", session="tab1")
    decisions.decide(tab2, [b], "rejected", session="tab2")
    con.close()
    assert decisions.current(connect(path)) == {a: "accepted", b: "rejected"}


def test_a_batch_writes_only_what_each_scorer_did_on_each_image(con) -> None:
    sync_scan(con, scan_rows(["a.png", "b.png", "c.png"]))
    score(con, {"a.png": (0.1, 1.0), "b.png": (0.2, 2.0), "c.png": (0.3, 3.0)})
    i = ids(con)
    # One batch, three situations: both scorers ran again on a; only q ran on b (n was already
    # current there); q failed on c while n ran.
    a = ImageResult(i["a.png"], "sha-a.png", "ok", scores={"q": {"quality": 0.9}, "n": {"noise": 9.0, "info": 1.0}})
    b = ImageResult(i["b.png"], "sha-b.png", "ok", scores={"q": {"quality": 0.8}})
    c = ImageResult(i["c.png"], "sha-c.png", "ok", scores={"n": {"noise": 7.0, "info": 2.0}},
                    scorer_errors={"q": "RuntimeError: boom"})
    write_results(con, [a, b, c], {"q": "2", "n": "1"}, {"q": ("quality",), "n": ("noise", "info")})
    rows = {p: (q, n, f) for p, q, n, f in con.execute(
        "SELECT path, quality, noise, info FROM image_scores").fetchall()}
    assert rows == {"a.png": (0.9, 9.0, 1.0), "b.png": (0.8, 2.0, 1.0), "c.png": (None, 7.0, 2.0)}
    runs = set(con.execute(
        "SELECT i.path, r.scorer, r.version, r.error FROM scorer_runs r JOIN images i ON i.id = r.image_id").fetchall())
    assert runs == {("a.png", "q", "2", None), ("a.png", "n", "1", None), ("b.png", "q", "2", None),
                    ("b.png", "n", "1", None), ("c.png", "q", "2", "RuntimeError: boom"), ("c.png", "n", "1", None)}
    assert con.execute("SELECT count(*) FROM scores").fetchone()[0] == 3
