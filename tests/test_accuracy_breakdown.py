"""The accuracy breakdown benchmark: phases of a scripted video, and a reduced run."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.accuracy_breakdown import PHASES, breakdown, frame_phases
from i2v.data.synthetic_scene import SceneEvent


def test_frame_phases_follow_the_script_with_hidden_first() -> None:
    events = [
        SceneEvent("distractor", 1, 2, 5),  # look-alike on frames 2-4
        SceneEvent("occlusion", 1, 4, 6),  # hidden on 4-5, back from 6 on
        SceneEvent("exit", 2, 1, 3),  # another object: no effect on object 1
    ]
    assert frame_phases(events, 1, 8) == [
        "clean", "clean", "look-alike", "look-alike", "hidden", "hidden", "after", "after"]
    assert frame_phases(events, 2, 5) == ["clean", "hidden", "hidden", "after", "after"]
    assert frame_phases(events, 3, 3) == ["clean"] * 3


@pytest.mark.slow
def test_breakdown_counts_every_pair_after_the_prompt_once() -> None:
    from i2v.data.registry import make_dataset
    from i2v.data.synthetic import SyntheticConfig

    videos, frames = 2, 6
    result = breakdown(None, videos, frames, "cpu", verbose=False)
    dataset = make_dataset("synthetic", split="val", num_videos=videos, config=SyntheticConfig(num_frames=frames))
    expected = 0
    for i in range(videos):
        for n in range(len(dataset.obj_ids(i))):
            first = min(t for t in range(frames) if dataset.masks(i, t)[n].any())
            expected += frames - 1 - first
    for scores in result["phases"].values():
        assert list(scores) == list(PHASES)
        assert sum(s["pairs"] for s in scores.values()) == expected
        for s in scores.values():
            assert (s["j"] is None) == (s["pairs"] == 0)
            assert s["j"] is None or 0.0 <= s["j"] <= 1.0
    ceiling = result["one_step_ceiling"]
    assert ceiling["pairs"] > 0
    # The decoder's low-resolution mask bounds what any prompt can reach, and the bundled tiny
    # SAM prompted with the true box segments clean frames well.
    assert ceiling["low_res_round_trip"] > 0.9
    assert 0.5 < ceiling["own_box"] <= ceiling["low_res_round_trip"] + 1e-9
    assert np.isfinite(ceiling["prev_mask_and_box"])
