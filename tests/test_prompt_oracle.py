"""benchmarks/prompt_oracle.py: its gates are tracking policies that keep one of two decodes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import i2v
from benchmarks.prompt_oracle import SourceGate, _truth
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(model, dataset, policy):
    predictor = i2v.I2VVideoPredictor(model, progress=False, policy=policy)
    clip = dataset.clip(0, range(dataset.num_frames(0)))
    state = predictor.init_state(clip.frames)
    predictor.add_new_mask(state, 0, 1, clip.masks[0, 0])
    with torch.inference_mode():
        return {t: m.clone() for t, _, m in predictor.propagate_in_video(state)}, clip


@pytest.fixture(scope="module")
def setting():
    cfg = SyntheticConfig(num_frames=6, min_objects=1, max_objects=1)
    return i2v.build_sam_i2v("tiny", device="cpu"), SyntheticVideoDataset("test", 1, config=cfg, seed=3)


def test_previous_output_gate_is_the_rule_with_agreement_zero(setting) -> None:
    model, dataset = setting
    gated, _ = _run(model, dataset, SourceGate("previous-output"))
    saved = model.config
    model.config = dataclasses.replace(saved, memory_prompt=dataclasses.replace(saved.memory_prompt, agreement=0.0))
    try:
        plain, _ = _run(model, dataset, i2v.policies.DefaultPolicy())
    finally:
        model.config = saved
    assert gated.keys() == plain.keys() and all(torch.equal(gated[t], plain[t]) for t in plain)


def test_oracle_gate_needs_truth_and_is_at_least_as_close_on_the_first_tracked_frame(setting) -> None:
    model, dataset = setting
    with pytest.raises(ValueError, match="ground truth"):
        _run(model, dataset, SourceGate("oracle"))
    truth = _truth(model, dataset, 0)
    oracle, clip = _run(model, dataset, SourceGate("oracle", truth))
    memory, _ = _run(model, dataset, i2v.policies.DefaultPolicy())
    gt = torch.from_numpy(clip.masks[1, 0]) if not torch.is_tensor(clip.masks) else clip.masks[1, 0].bool()

    def iou(m):
        p = m[0, 0] > 0
        return float((p & gt).sum()) / max(1, int((p | gt).sum()))

    assert iou(oracle[1]) >= iou(memory[1]) - 0.02  # chosen at the decoder's resolution, scored at the frame's
