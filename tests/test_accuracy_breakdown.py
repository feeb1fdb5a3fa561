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
        "clean",
        "clean",
        "look-alike",
        "look-alike",
        "hidden",
        "hidden",
        "after",
        "after",
    ]
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


class _Recorder:
    """An inner predictor that records prompts and answers 'everywhere' on every frame."""

    def __init__(self) -> None:
        self.prompts = []

    def init_state(self, video):
        return {"video": video, "ids": []}

    def add_new_mask(self, state, t, obj_id, mask):
        self.prompts.append((t, obj_id, np.array(mask, dtype=bool)))
        if obj_id not in state["ids"]:
            state["ids"].append(obj_id)

    def propagate_in_video(self, state, start_frame_idx=0):
        import torch

        h, w = state["video"].height, state["video"].width
        for t in range(start_frame_idx, len(state["video"])):
            yield t, list(state["ids"]), torch.full((len(state["ids"]), 1, h, w), 5.0)


def test_event_oracle_empties_hidden_frames_and_reprompts_on_return() -> None:
    from benchmarks.accuracy_breakdown import EventOracle
    from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
    from i2v.eval.vos import segment_video

    cfg = SyntheticConfig(
        num_frames=16, min_objects=1, max_objects=1, occlusion_prob=0.0, exit_prob=1.0, distractor_prob=0.0
    )
    dataset = SyntheticVideoDataset("val", 4, config=cfg)
    index = next(i for i in range(len(dataset)) if any(e.kind == "exit" for e in dataset.events(i)))
    event = next(e for e in dataset.events(index) if e.kind == "exit")
    inner = _Recorder()
    preds, gts = segment_video(EventOracle(inner), dataset, index, "mask")
    for t in range(len(gts)):
        assert preds[t, 0].any() != (event.start <= t < event.end)  # empty exactly while hidden
    (t0, _, first), (t1, obj_id, back) = inner.prompts
    assert t0 == 0 and t1 >= event.end and obj_id == dataset.obj_ids(index)[0]
    assert np.array_equal(back, gts[t1, 0]) and back.sum() >= 20
    assert all(gts[t, 0].sum() < 20 for t in range(event.end, t1))  # the first frame it shows again
