"""The performance benchmarks: probes around a predictor, the side-by-side benchmark without
SAM 2 installed, the GPU script's CPU smoke mode, and the cost and profile benchmarks on tiny."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import benchmarks.__main__ as benchmarks_main
from benchmarks import cost, gpu, profile_objects, trackers, vs_sam2
from benchmarks.plots import RESULTS
from benchmarks.predictor_probes import EncoderTap, FlopMeter, state_bytes


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The benchmarks set torch's thread count for their process; later tests must not inherit it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class _Holder:
    def __init__(self) -> None:
        self.a = torch.zeros(10)  # 40 bytes
        self.view = self.a[2:5]  # same storage: not counted again
        self.more = {"b": np.zeros(4, dtype=np.uint8), "c": [b"12345"]}
        self.module = nn.Linear(100, 100)  # skipped


def test_state_bytes_counts_each_storage_once_and_skips_modules_and_exclusions() -> None:
    h = _Holder()
    assert state_bytes(h) == 40 + 4 + 5
    assert state_bytes(h, exclude=[h.more]) == 40
    assert state_bytes({"x": h, "y": h.a}) == 49


def test_encoder_tap_counts_the_encoder_and_replays_its_first_output() -> None:
    encoder = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4))
    head = nn.Linear(4, 2)
    x = torch.randn(3, 8)
    with FlopMeter() as meter:
        tap = EncoderTap(encoder, meter)
        first = head(encoder(x))
        assert tap.flops == 2 * 3 * (8 * 16 + 16 * 4) and tap.calls == 1 and tap.live_calls == 1
        assert meter.total() == tap.flops + 2 * 3 * 4 * 2
        tap.reset()
        tap.replay = True
        again = head(encoder(torch.randn(3, 8)))  # another input, the first output
        assert tap.flops == 0 and tap.calls == 1 and tap.live_calls == 1
    assert torch.equal(first, again)
    tap.remove()
    assert not torch.equal(encoder(torch.randn(3, 8)), encoder(torch.randn(3, 8)))


def test_flop_meter_counts_attention_once() -> None:
    q = torch.randn(1, 2, 16, 8)
    with FlopMeter() as meter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert meter.total() == 2 * 2 * 16 * 16 * (8 + 8)


@pytest.mark.slow
def test_side_by_side_runs_on_sam_i2v_alone(tmp_path: Path) -> None:
    out = tmp_path / "vs.json"
    args = ["--systems", "tiny", "--size", "128", "--frames", "2", "--rounds", "1", "--flop-frames", "3"]
    args += ["--state-frames", "3", "6", "--state-systems", "tiny", "--threads", "1", "--in-process", "--out", str(out)]
    assert vs_sam2.main(args) == 0
    m = json.loads(out.read_text())["metrics"]
    f = m["flops"]["tiny"]
    assert f["encoder"] > 0 and f["tracking_first_object"] > 0 and f["tracking_each_further_object"] > 0
    assert [r["frame"] for r in f["per_frame_1_object"]] == [1, 2, 3]
    t = m["time"]["tiny/1"]
    assert 0 < t["encoder_seconds"] < t["seconds_per_frame"] and t["peak_rss_mib"] > 0
    assert "tiny/8" in m["time"]
    s = m["state"]["tiny"]
    assert s["bytes"]["6"]["state"] > 0 and s["frames_bytes_per_frame"] > 0
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_side_by_side_without_sam2_says_how_to_install_it(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(vs_sam2, "sam2_available", lambda: False)
    monkeypatch.setattr(trackers, "sam2_available", lambda: False)
    assert vs_sam2.main(["--out", str(tmp_path / "x.json")]) == 0
    assert "pip install -e '.[bench]'" in capsys.readouterr().out
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(RuntimeError, match="bench"):
        trackers.build_tracker("sam2.1-t")


def test_benchmark_runner_skips_the_side_by_side_without_sam2(monkeypatch, capsys) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sam2" else real(name, *a))
    monkeypatch.setattr(benchmarks_main, "make_plots", lambda: [])
    monkeypatch.setattr(benchmarks_main, "summary", lambda: "")
    assert benchmarks_main.main(["--only", "vs_sam2"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_stored_side_by_side_and_profile_results_have_summary_rows(tmp_path: Path) -> None:
    import shutil

    for name in benchmarks_main.EXTRA_BENCHMARKS:
        shutil.copy(RESULTS / f"{name}.json", tmp_path)
    rows = benchmarks_main.summary(tmp_path).splitlines()
    assert [r.split()[0] for r in rows] == list(benchmarks_main.EXTRA_BENCHMARKS)
    assert "SAM 2.1-T" in rows[0] and "<= 1.5x" in rows[1]


def test_gpu_script_skips_cleanly_without_cuda(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "g.json")]) == 0
    assert "CUDA is not available" in capsys.readouterr().out
    assert not (tmp_path / "g.json").exists()


@pytest.mark.slow
def test_gpu_script_smoke_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "g.json"
    args = ["--device", "cpu", "--tiny", "--objects", "1", "2", "--frames", "1", "--warmup", "1", "--out", str(out)]
    assert gpu.main(args) == 0
    runs = json.loads(out.read_text())["metrics"]["runs"]
    assert set(runs) == {f"tiny/{m}/{n}" for m in gpu.I2V_MODES for n in (1, 2)}
    for r in runs.values():
        assert r["ms_per_frame"] > 0 and r["fps"] == pytest.approx(1e3 / r["ms_per_frame"])
        assert 0 < r["encoder_ms"] < r["ms_per_frame"]


@pytest.mark.gpu
def test_gpu_script_on_cuda(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "g.json"
    args = ["--types", "vit_t", "--modes", "float32", "--objects", "1", "--sam2", "--frames", "2", "--warmup", "1"]
    assert gpu.main(args + ["--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["runs"]["vit_t/float32/1"]["fps"] > 0


@pytest.mark.slow
def test_cost_is_measured_through_propagation(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    cost.main(["--config", "tiny", "--objects", "1", "2", "--runs", "1", "--output", str(out)])
    m = json.loads(out.read_text())["metrics"]
    assert m["objects"]["2"]["default"]["flops"] > m["first_object_flops"] > 0
    assert "propagate_in_video" in m["flops_note"]


@pytest.mark.slow
def test_profile_objects_on_tiny(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    args = ["--types", "tiny", "--rounds", "1", "--frames", "4", "--top", "5", "--threads", "1", "--out", str(out)]
    assert profile_objects.main(args) == 0
    t = json.loads(out.read_text())["metrics"]["tiny"]
    assert t["ratio_8_vs_1"] > 1 and len(t["gap_ops"]) == 5
    assert any(r["op"].startswith("aten::") for r in t["top_ops_1"])


@pytest.mark.slow
def test_side_by_side_with_sam2(tmp_path: Path) -> None:
    pytest.importorskip("sam2")
    out = tmp_path / "vs.json"
    args = ["--systems", "sam2.1-t", "--size", "256", "--flop-frames", "1", "--no-time", "--no-state", "--threads", "1"]
    assert vs_sam2.main(args + ["--in-process", "--out", str(out)]) == 0
    f = json.loads(out.read_text())["metrics"]["flops"]["sam2.1-t"]
    assert f["encoder"] > f["tracking_first_object"] > 0
    assert f["tracking_each_further_object"] == pytest.approx(f["tracking_first_object"], rel=0.05)
