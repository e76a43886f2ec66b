"""The CLI contract of README.md, run as users run it: `python -m curator ...` in a subprocess."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import photo, save

REPO = Path(__file__).resolve().parent.parent


def curator(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def fast_scorers() -> str:
    """The weight-free classic scorers: what every machine can run quickly."""
    from scorers import registered

    return ",".join(n for n, c in registered().items() if c.__module__ == "scorers.classic")


def test_scorers_json_lists_every_scorer_with_metrics() -> None:
    result = curator("scorers", "--json")
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    from scorers import registered

    assert [s["name"] for s in table] == list(registered())
    for s in table:
        assert set(s) >= {"name", "version", "available", "reason", "metrics"}
        assert s["available"] or s["reason"]
        for m in s["metrics"]:
            assert set(m) >= {"name", "min", "max", "higher_is_better"}


@pytest.mark.parametrize("args, message", [
    (["score"], "the following arguments are required: root"),
    (["score", "/definitely/not/here"], "dataset folder not found"),
    (["score", ".", "--batch-size", "0"], "must be at least 1"),
    (["score", ".", "--scorers", "sharpnes"], "unknown scorer 'sharpnes'"),
    (["rank", "--db", "/nope.duckdb"], "no database at /nope.duckdb"),
    (["frobnicate"], "invalid choice"),
    (["score", ".", "--option", "brisque_modle=libsvm"], "unknown scorer option 'brisque_modle'"),
    (["score", ".", "--option", "brisque_model"], "expected KEY=VALUE"),
])
def test_bad_arguments_give_one_clear_line(args: list[str], message: str) -> None:
    result = curator(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_score_then_rank_csv_and_json(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(6):
        save(photo(i, (160, 120)), root / f"p{i}.jpg", quality=90)
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    db = tmp_path / "c.duckdb"
    result = curator("score", str(root), "--db", str(db), "--scorers", fast_scorers())
    assert result.returncode == 0, result.stderr
    assert "7 images processed (1 broken" in result.stdout

    result = curator("rank", "--db", str(db), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 6 and list(rows[0])[:2] == ["path", "ensemble"]
    ensembles = [float(r["ensemble"]) for r in rows]
    assert ensembles == sorted(ensembles, reverse=True)

    # Weight one closed-range metric alone: the order must follow it.
    from scorers import registered

    metric = next(m for c in registered().values() if c.__module__ == "scorers.classic"
                  for m in c.metrics if m.closed_range and m.default_weight > 0)
    others = [name for name in list(rows[0])[2:] if name != metric.name]
    weights = ",".join([f"{metric.name}=1"] + [f"{n}=0" for n in others])
    result = curator("rank", "--db", str(db), "--format", "json", "--weights", weights)
    values = [row[metric.name] for row in json.loads(result.stdout)]
    assert values == sorted(values, reverse=metric.higher_is_better)

    result = curator("rank", "--db", str(db), "--weights", "nonsense=1")
    assert result.returncode == 2 and "unknown metric 'nonsense'" in result.stderr


def test_scorer_options_reach_the_scorer_and_are_listed(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(3):
        save(photo(i, (160, 120)), root / f"p{i}.png")
    db = tmp_path / "c.duckdb"
    result = curator("score", str(root), "--db", str(db), "--scorers", "brisque", "--option", "brisque_model=bogus")
    assert result.returncode == 1 and "unavailable: brisque_model must be one of" in result.stderr
    result = curator("score", str(root), "--db", str(db), "--scorers", "brisque", "--option", "brisque_model=libsvm")
    assert result.returncode == 0, result.stderr
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        versions = {v for (v,) in con.execute("SELECT DISTINCT version FROM scorer_runs").fetchall()}
    assert len(versions) == 1 and "+libsvm." in versions.pop()
    listed = {s["name"]: s["options"] for s in json.loads(curator("scorers", "--json").stdout)}
    assert "brisque_model" in listed["brisque"] and "reference_dir" in listed["identity"]
