"""Paired J&F gains between methods with a bootstrap interval over videos (i2v.eval.report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence

import numpy as np
import pytest

from i2v.eval.report import format_gain, gains_vs_baseline, paired_gain, write_reports
from i2v.eval.vos import VideoRow, VOSResult


def result(method: str, videos: Sequence[Sequence[float]], f_offset: float = 0.0, protocol: str = "mask") -> VOSResult:
    """A result whose object j_mean values are ``videos`` (one list per video), F = J + offset."""
    r = VOSResult(method, protocol)
    for v, objs in enumerate(videos):
        r.rows.append(VideoRow(f"video{v}", len(objs), *([0.0] * 8)))
        for value in objs:
            r.objects["j_mean"].append(value)
            r.objects["f_mean"].append(value + f_offset)
            for key in ("j_recall", "j_decay", "f_recall", "f_decay"):
                r.objects[key].append(0.0)
    return r


def random_videos(rng: np.random.Generator, counts: List[int]) -> List[List[float]]:
    return [list(rng.uniform(0, 1, n)) for n in counts]


def test_gain_is_the_difference_of_the_overall_jf() -> None:
    rng = np.random.default_rng(0)
    counts = [1, 3, 2, 4, 1, 2]
    base, other = (
        result("per-frame SAM", random_videos(rng, counts)),
        result("upgrade", random_videos(rng, counts), 0.05),
    )
    # An object that is never on a scored frame has no score under either method.
    for r in (base, other):
        r.objects["j_mean"][2] = r.objects["f_mean"][2] = float("nan")
    g = paired_gain(base, other)
    assert g["gain"] == pytest.approx(other.summary()["jf_mean"] - base.summary()["jf_mean"])
    assert g["videos"] == len(counts)
    assert g["low"] < g["gain"] < g["high"]


def test_interval_resamples_whole_videos() -> None:
    # Two videos: gain +0.1 on the first (one object), -0.3 on the second (three objects). Any
    # resample of videos gives an object-weighted mean between the two, never outside.
    base = result("per-frame SAM", [[0.5], [0.6, 0.6, 0.6]])
    other = result("upgrade", [[0.6], [0.3, 0.3, 0.3]])
    g = paired_gain(base, other)
    assert g["gain"] == pytest.approx((0.1 - 0.9) / 4)
    assert -0.3 - 1e-9 <= g["low"] < g["high"] <= 0.1 + 1e-9


def test_a_constant_gain_has_a_zero_width_interval_and_one_video_none() -> None:
    base = result("per-frame SAM", [[0.2, 0.4], [0.5], [0.1]])
    other = result("upgrade", [[0.3, 0.5], [0.6], [0.2]])
    g = paired_gain(base, other)
    assert g["gain"] == pytest.approx(0.1) and g["low"] == g["high"] == g["gain"]
    single = paired_gain(result("per-frame SAM", [[0.2, 0.4]]), result("upgrade", [[0.5, 0.5]]))
    assert single["gain"] == pytest.approx(0.2) and single["low"] is None and single["high"] is None
    assert "no interval" in format_gain(
        {"method": "upgrade", "baseline": "per-frame SAM", "protocol": "mask", **single}
    )


def test_more_videos_narrow_the_interval() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (8, 128):
        videos = random_videos(rng, [2] * n)
        shifts = rng.normal(0.05, 0.2, n)  # each video's own gain
        g = paired_gain(
            result("per-frame SAM", videos),
            result("upgrade", [[v + d for v in objs] for objs, d in zip(videos, shifts)]),
        )
        widths.append(g["high"] - g["low"])
    assert widths[1] < widths[0] / 2


def test_methods_scored_on_different_videos_are_refused() -> None:
    base = result("per-frame SAM", [[0.2], [0.4]])
    with pytest.raises(ValueError, match="same videos and objects"):
        paired_gain(base, result("upgrade", [[0.2], [0.4], [0.5]]))
    with pytest.raises(ValueError, match="same videos and objects"):
        paired_gain(base, result("upgrade", [[0.2, 0.3], [0.4]]))


def test_gains_pair_methods_within_a_protocol_and_reach_the_json(tmp_path: Path) -> None:
    videos = [[0.2, 0.4], [0.5], [0.1]]
    results = [
        result("per-frame SAM", videos),
        result("upgrade", [[v + 0.1 for v in o] for o in videos]),
        result("per-frame SAM", videos, protocol="box"),
        result("upgrade", [[v - 0.1 for v in o] for o in videos], protocol="box"),
    ]
    rows = gains_vs_baseline(results)
    assert [(r["method"], r["protocol"]) for r in rows] == [("upgrade", "mask"), ("upgrade", "box")]
    assert [round(r["gain"], 6) for r in rows] == [0.1, -0.1]
    assert gains_vs_baseline(results[1:2]) == []  # no baseline evaluated: nothing to compare with
    paths = write_reports(results, tmp_path, {})
    saved = json.loads(paths["json"].read_text())["gains"]
    assert [round(r["gain"], 6) for r in saved] == [0.1, -0.1]
    assert format_gain(rows[0]).startswith("upgrade vs per-frame SAM (mask): J&F +0.100, 95% interval")
