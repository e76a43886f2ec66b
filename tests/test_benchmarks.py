"""The benchmark scripts still run against the code they measure (tiny sizes; no figures checked).

They are not run by anything else in CI, so an API change would otherwise break them silently.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks import rerank_latency, throughput


def test_rerank_latency_runs_on_a_small_database(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CURATOR_DATA_DIR", str(tmp_path / "data"))   # measure() sets it; restored after
    result = rerank_latency.measure(tmp_path, 300, 2)
    assert result


def test_throughput_contenders_run_on_a_small_folder(tmp_path: Path) -> None:
    paths = throughput.build_folder(tmp_path / "images", 4)
    assert len(paths) == 4
    assert throughput.bare_pillow(paths) > 0 and throughput.bare_pillow(paths, 2) > 0
    names = ["sharpness", "exposure"]
    assert throughput.curator_score(tmp_path / "images", tmp_path, names) > 0


def test_degradation_eval_runs_on_a_few_images() -> None:
    from benchmarks import degradation_eval

    report = degradation_eval.run(8, 4, 4)
    assert "| watermark |" in report and "`degradation_watermark`" in report
    assert "| clean source |" in report
