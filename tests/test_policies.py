"""The tracking-policy seam (i2v.policies): a new policy plugs into the predictor as one class,
the default policy's prior options, older configs' prior settings, and the builders' RNG."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

import i2v
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.inference_state import FrameOutput
from i2v.motion import logits_box_array
from i2v.policies import DefaultPolicy, ObjectInput, PolicyOutput, PriorOptions, TrackingPolicy
from i2v.tracking_ops import PROMPTED_PRESENCE, TrackedObjects, logits_box, plan_prompts, prior_box, track_objects

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return i2v.build_sam_i2v("tiny", device="cpu")


def _clip(num_frames: int = 5):
    cfg = SyntheticConfig(num_frames=num_frames, min_objects=2, max_objects=2, occlusion_prob=0.0, exit_prob=0.0)
    return SyntheticVideoDataset("val", 1, config=cfg, seed=5).clip(0, range(num_frames))


@dataclass
class HoldPolicy(TrackingPolicy):
    """A policy written against the interface alone: every object keeps its prior (its last
    output), decodes nothing, and counts the frames since its prompt in its policy state."""

    calls: int = 0
    seen_ids: Optional[List[List[Optional[int]]]] = None

    def restart(self, model, output: FrameOutput) -> int:
        return 0

    def track(
        self, model, frame, frame_idx: int, objects: Sequence[ObjectInput], extent: Optional[Tuple[int, int]] = None
    ) -> PolicyOutput:
        self.calls += 1
        self.seen_ids = (self.seen_ids or []) + [[o.obj_id for o in objects]]
        absent = torch.full((1, 1, *model.low_res_size), model.config.absent_logit)
        logits = torch.cat([absent if o.prior is None else o.prior.cpu() for o in objects])
        n = len(objects)
        iou = torch.ones(n)
        presence = torch.full((n,), PROMPTED_PRESENCE)
        entries = model.make_memory(frame, frame_idx, logits, iou, presence, prompted=False)
        plan = plan_prompts(model, frame, frame_idx, [None] * n, [[] for _ in objects])
        tracked = TrackedObjects(logits, logits, logits, iou[:, None], iou, presence, entries, plan, torch.ones(n))
        return PolicyOutput(tracked, [o.state + 1 for o in objects])


def test_a_new_policy_is_one_class_the_predictor_runs(model) -> None:
    clip = _clip()
    policy = HoldPolicy()
    predictor = i2v.I2VVideoPredictor(model, progress=False, policy=policy)
    state = predictor.init_state(clip.frames)
    _, _, first = predictor.add_new_mask(state, 0, 1, clip.masks[0, 0])
    assert state.tracks[1].policy_state == 0  # restarted by the prompt
    frames = {t: masks.clone() for t, _, masks in predictor.propagate_in_video(state)}
    assert policy.calls == 4 and state.tracks[1].policy_state == 4  # the state comes back each frame
    assert all(torch.equal(frames[t], first) for t in frames)  # what the policy returned is recorded
    assert len(state.tracks[1].bank) == 5  # with the memory entries it wrote
    assert policy.seen_ids == [[1]] * 4  # each object comes with the client's id


def test_the_policy_is_told_each_objects_id_in_the_predictors_order(model) -> None:
    clip = _clip(3)
    policy = HoldPolicy()
    predictor = i2v.I2VVideoPredictor(model, progress=False, policy=policy)
    state = predictor.init_state(clip.frames)
    predictor.add_new_mask(state, 0, 7, clip.masks[0, 0])
    predictor.add_new_mask(state, 0, 3, clip.masks[0, 1])
    list(predictor.propagate_in_video(state))
    assert policy.seen_ids == [[7, 3], [7, 3]]


def test_default_policy_prior_options(model) -> None:
    frame = model.prepare_frame(torch.randn(1, model.sam.prompt_encoder.embed_dim, *model.embedding_size), None)
    prior = torch.full((1, 1, *model.low_res_size), -10.0)
    prior[..., 10:30, 20:40] = 10.0
    objects = [ObjectInput(prior, []), ObjectInput(None, [])]
    with torch.no_grad():
        both = DefaultPolicy().plan(model, frame, 1, objects)
        no_box = DefaultPolicy(priors=PriorOptions(box=False)).plan(model, frame, 1, objects)
        no_mask = DefaultPolicy(priors=PriorOptions(mask=False)).plan(model, frame, 1, objects)
        tracked = DefaultPolicy(priors=PriorOptions(mask=False)).track(model, frame, 1, objects).tracked
        expected = track_objects(model, frame, 1, [None, None], [[], []])
    assert both.sources == ["prior", "none"] and no_mask.sources == ["none", "none"]
    assert torch.equal(both.prompts[0].boxes, torch.tensor([[40.0, 20.0, 80.0, 60.0]]))  # in SAM's input pixels
    assert no_box.prompts[0].boxes is None and torch.equal(no_box.prompts[0].mask_inputs, prior)
    assert torch.equal(tracked.logits, expected.logits)


def test_box_helpers_agree() -> None:
    logits = torch.full((1, 1, 16, 16), -5.0)
    logits[0, 0, 3:7, 2:10] = 5.0
    assert torch.equal(logits_box(logits), torch.tensor([2.0, 3.0, 10.0, 7.0]))  # exclusive maxima
    assert torch.equal(prior_box(logits, 64), torch.tensor([[8.0, 12.0, 40.0, 28.0]]))
    assert np.array_equal(logits_box_array(logits), [2, 3, 10, 7]) and logits_box_array(logits).dtype == np.float64
    assert logits_box(torch.full((1, 1, 8, 8), -1.0)) is None and prior_box(torch.zeros(1, 1, 8, 8), 32) is None


def test_older_configs_prior_settings_become_the_default_policys(model) -> None:
    cfg = model.config
    old = dataclasses.replace(cfg, memory_prompt=dataclasses.replace(cfg.memory_prompt, mask_prior=False))
    legacy = i2v.build_sam_i2v(old, device="cpu")
    with pytest.warns(DeprecationWarning, match="PriorOptions"):
        predictor = i2v.I2VVideoPredictor(legacy)
    assert predictor.policy == DefaultPolicy(priors=PriorOptions(mask=False, box=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert i2v.I2VVideoPredictor(model).policy == DefaultPolicy()


def test_building_leaves_the_global_rng_alone_and_is_seeded() -> None:
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    a = i2v.build_sam_i2v("tiny", device="cpu", seed=3)
    assert torch.equal(torch.rand(4), expected)
    b = i2v.build_sam_i2v("tiny", device="cpu", seed=3)
    pa, pb = a.state_dict(), b.state_dict()
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def test_offload_video_to_cpu_is_accepted_and_answered(model) -> None:
    predictor = i2v.I2VVideoPredictor(model, progress=False)
    state = predictor.init_state(_clip(2).frames, offload_video_to_cpu=False)
    assert state["offload_video_to_cpu"] is True  # frames are never kept on the device


def test_object_state_records_a_prompt_with_its_output_memory_and_policy_state(model) -> None:
    clip = _clip(3)
    predictor = i2v.I2VVideoPredictor(model, progress=False)
    state = predictor.init_state(clip.frames)
    ys, xs = np.nonzero(clip.masks[1, 0])
    predictor.add_new_points_or_box(state, 1, 1, points=[[xs[0], ys[0]]], labels=[1])
    track = state.tracks[1]
    assert track.prompted_frames == [1] and track.last is track.prompted_outputs[1]
    assert list(track.bank.entries) == [1] and track.bank.entries[1].prompted
    predictor.add_new_mask(state, 1, 1, clip.masks[1, 0])  # a mask replaces the clicks there
    assert list(track.masks) == [1] and not track.points and len(track.bank) == 1
    assert track.policy_state is None  # the default policy keeps nothing
    outputs: List[torch.Tensor] = [m for _, _, m in predictor.propagate_in_video(state)]
    assert len(outputs) == 2 and track.tracked_frames == [2]


def test_segment_cli_tracks_with_the_chosen_policy(tmp_path, monkeypatch) -> None:
    from PIL import Image

    from i2v.build import default_sam_checkpoint
    from i2v.cli import main

    clip = _clip(4)
    for t in range(4):
        Image.fromarray(clip.frames[t]).save(tmp_path / f"{t:05d}.png")
    from i2v.policies import MotionAwarePolicy

    frames_tracked: List[int] = []
    original = MotionAwarePolicy.track

    def spy(self, model, frame, frame_idx, objects, extent=None):
        frames_tracked.append(frame_idx)
        return original(self, model, frame, frame_idx, objects, extent)

    monkeypatch.setattr(MotionAwarePolicy, "track", spy)
    sam = str(default_sam_checkpoint("tiny"))
    argv = [
        "segment",
        str(tmp_path),
        "--obj-id",
        "1",
        "--box",
        "30,30,90,90",
        "--sam-checkpoint",
        sam,
        "--device",
        "cpu",
    ]
    assert main(argv + ["--no-motion", "--out", str(tmp_path / "default")]) == 0
    assert frames_tracked == []
    assert main(argv + ["--motion", "--out", str(tmp_path / "motion")]) == 0
    assert frames_tracked == [1, 2, 3]
