"""The benchmark runner's plots and summary table, on the stored results."""

from __future__ import annotations

import shutil
from pathlib import Path

import benchmarks.__main__ as benchmarks_main  # the repository root is on sys.path under `python -m pytest`
from benchmarks.plots import RESULTS, make_plots


def test_every_benchmark_has_a_stored_result_plot_and_summary_row(tmp_path: Path) -> None:
    for name in benchmarks_main.BENCHMARKS:
        shutil.copy(RESULTS / f"{name}.json", tmp_path)
    pngs = make_plots(tmp_path)
    assert sorted(p.stem for p in pngs) == sorted(benchmarks_main.BENCHMARKS)
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = benchmarks_main.summary(tmp_path).splitlines()
    assert [r.split()[0] for r in rows] == list(benchmarks_main.BENCHMARKS)


def test_summary_skips_missing_results(tmp_path: Path) -> None:
    shutil.copy(RESULTS / "cost.json", tmp_path)
    rows = benchmarks_main.summary(tmp_path).splitlines()
    assert len(rows) == 1 and rows[0].startswith("cost")


def test_a_written_result_gets_its_plot_beside_it(tmp_path: Path) -> None:
    import json

    from benchmarks.common import write_result

    stored = json.loads((RESULTS / "propagation.json").read_text())
    path = write_result("propagation", config={}, metrics=stored["metrics"], device="cpu", path=tmp_path / "p.json")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_result("accuracy_breakdown", config={}, metrics={}, device="cpu", path=tmp_path / "b.json")
    assert (tmp_path / "b.json").is_file() and not (tmp_path / "b.png").exists()  # no plot for it
    assert path == tmp_path / "p.json"
