"""``sam-i2v quickstart`` end to end, in a reduced mode (few steps, few short videos)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image

from i2v.cli import main
from i2v.errors import StandInSamWarning
from i2v.pretrained import CONFIG_NAME, WEIGHTS_NAME


@pytest.mark.slow
def test_quickstart_reduced_mode_writes_everything(tmp_path: Path, capsys) -> None:
    out = tmp_path / "qs"
    with warnings.catch_warnings(record=True) as caught:
        # the quickstart runs the tiny SAM on synthetic videos on purpose: no stand-in warning
        warnings.simplefilter("always", StandInSamWarning)
        code = main(
            ["quickstart", "--out", str(out), "--steps", "6", "--videos", "2", "--val-videos", "2", "--frames", "6"]
        )
    assert code == 0
    assert not [w for w in caught if issubclass(w.category, StandInSamWarning)]
    printed = capsys.readouterr().out
    methods = ["per-frame SAM", "untrained upgrade", "trained upgrade", "trained upgrade + motion"]
    for method in methods:
        assert method in printed
    assert (out / "adapter" / WEIGHTS_NAME).is_file() and (out / "adapter" / CONFIG_NAME).is_file()
    payload = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in payload["results"]] == methods
    for r in payload["results"]:
        assert 0.0 <= r["summary"]["jf_mean"] <= 1.0 and len(r["videos"]) == 2
    gains = {g["method"]: g for g in payload["gains"]}
    assert set(gains) == set(methods[1:])
    summary = {r["method"]: r["summary"]["jf_mean"] for r in payload["results"]}
    assert gains["trained upgrade"]["gain"] == pytest.approx(summary["trained upgrade"] - summary["per-frame SAM"])
    assert "trained upgrade vs per-frame SAM (mask):" in printed and "over 2 videos" in printed
    assert (out / "results.csv").read_text().count("\n") == 5
    with Image.open(out / "training_curve.png") as png:
        assert png.size[0] > 100
    with Image.open(out / "overlay.gif") as gif:
        assert gif.n_frames >= 2
    assert str(out / "adapter") in printed
