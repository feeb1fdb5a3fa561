"""Motion-aware mask selection (i2v.motion, i2v.policies.MotionAwarePolicy): the box filter, the
candidate choice, losing and re-finding an object (SAM's candidates scripted through the policy's
public ``candidates`` seam), and the predictor and eval runner with the policy."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch

import i2v
import i2v.motion as motion
from i2v.config import ModelConfig, MotionConfig, model_config_from_dict
from i2v.config_utils import to_dict
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.errors import ConfigError
from i2v.eval.cli import run_methods
from i2v.model import ObjectPrompts
from i2v.motion import (
    BoxKalman,
    Candidate,
    box_iou,
    choose_candidate,
    clip_box,
    logits_box_array,
    sam_candidates,
    search_boxes,
)
from i2v.policies import DefaultPolicy, MotionAwarePolicy, ObjectInput
from i2v.tracking_ops import TrackedObjects

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def moving_box(t: int) -> np.ndarray:
    """A 10x6 box whose corner moves by (+2, +1) per frame."""
    return np.array([5 + 2 * t, 8 + t, 15 + 2 * t, 14 + t], dtype=float)


def test_filter_learns_a_constant_velocity() -> None:
    kf = BoxKalman(moving_box(0))
    for t in range(1, 12):
        kf.predict()
        kf.update(moving_box(t))
    assert np.abs(kf.predict() - moving_box(12)).max() < 0.5


def test_velocity_decays_while_the_object_is_lost() -> None:
    kf = BoxKalman(moving_box(0), damping=0.5)
    for t in range(1, 12):
        kf.predict()
        kf.update(moving_box(t))
    centres = []
    for _ in range(4):
        kf.mark_lost()
        centres.append((kf.predict()[:2] + kf.box()[2:]) / 2)
    steps = np.diff(np.array(centres)[:, 0])
    assert steps[0] > 0 and np.allclose(steps[1:] / steps[:-1], 0.5, atol=0.05)
    kf.update(moving_box(16))
    assert kf.lost == 0 and np.array_equal(kf.last, moving_box(16))


def test_logits_box_array_and_box_iou() -> None:
    logits = torch.full((1, 1, 16, 16), -5.0)
    logits[0, 0, 3:7, 2:10] = 5.0
    assert np.array_equal(logits_box_array(logits), [2, 3, 10, 7])  # exclusive maxima
    assert logits_box_array(torch.full((1, 1, 8, 8), -1.0)) is None
    assert box_iou(np.array([0, 0, 4, 4.0]), np.array([2, 0, 6, 4.0])) == pytest.approx(1 / 3)
    assert box_iou(None, np.array([0, 0, 1, 1.0])) == 0.0
    assert box_iou(np.array([0, 0, 2, 2.0]), np.array([5, 5, 6, 6.0])) == 0.0


def candidate(box, iou: float, presence: float = 1.0) -> Candidate:
    return Candidate(torch.zeros(1, 1, 4, 4), iou, presence, None if box is None else np.array(box, dtype=float))


def test_choice_weighs_motion_against_predicted_iou() -> None:
    anchor = np.array([10, 10, 20, 20.0])
    along = candidate([11, 10, 21, 20], 0.6)  # moved as predicted
    jumped = candidate([14, 10, 24, 20], 0.95)  # overlaps the prediction by 0.43
    elsewhere = candidate([40, 40, 50, 50], 0.99)
    cands = [jumped, along, elsewhere]
    assert choose_candidate(cands, anchor, weight=0.25, threshold=0.3) is jumped
    assert choose_candidate(cands, anchor, weight=0.9, threshold=0.3) is along
    assert choose_candidate(cands, anchor, weight=0.25, threshold=0.5) is along  # "jumped" falls below
    assert choose_candidate(cands, anchor, weight=0.0, threshold=0.0) is elsewhere
    assert choose_candidate([elsewhere, candidate(None, 1.0)], anchor, 0.25, 0.3) is None
    assert choose_candidate([candidate([11, 10, 21, 20], 0.9, presence=-1.0)], anchor, 0.25, 0.3) is None


def test_motion_config_is_checked_and_old_configs_still_load() -> None:
    with pytest.raises(ValueError, match="motion.weight"):
        MotionConfig(weight=1.5)
    with pytest.raises(ValueError, match="motion.max_growth"):
        MotionConfig(max_growth=0.9)
    with pytest.raises(ValueError, match="motion.search_growth"):
        MotionConfig(search_growth=-1.0)
    data = to_dict(ModelConfig())
    data["motion"] = {"enabled": True, "min_iou": -0.1}  # a config of an earlier release, still checked
    with pytest.raises(ConfigError, match="min_iou"):
        model_config_from_dict(data)
    data["motion"] = {"enabled": True, "min_iou": 0.4}
    with pytest.warns(DeprecationWarning, match="tracking policy"):  # checked, then ignored with a note
        assert model_config_from_dict(data) == ModelConfig()
    data["motion"] = {"enabled": False}  # asks for nothing: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model_config_from_dict(data) == ModelConfig()
    data.pop("motion")  # an adapter saved before the option existed
    assert model_config_from_dict(data) == ModelConfig()


@dataclass
class ScriptedPolicy(MotionAwarePolicy):
    """The motion-aware policy with SAM's candidates scripted: each call of ``candidates`` pops
    the next list of ``script`` and records the prompts it was given."""

    script: List[List[Candidate]] = field(default_factory=list)
    prompts_seen: List[ObjectPrompts] = field(default_factory=list)

    def candidates(self, model, frame, prompts, stats) -> List[Candidate]:
        self.prompts_seen.append(prompts)
        return self.script.pop(0)


def step(
    policy, model, frame, t: int, prior: Optional[torch.Tensor], kf: Optional[BoxKalman]
) -> Tuple[TrackedObjects, Optional[BoxKalman]]:
    """One object (no memory) tracked on frame ``t``: its outputs and its new filter."""
    out = policy.track(model, frame, t, [ObjectInput(prior, [], kf)])
    return out.tracked, out.states[0]


@pytest.fixture(scope="module")
def bundled_model():
    return i2v.build_sam_i2v("tiny", device="cpu")


def test_an_object_is_lost_then_found_where_its_motion_says(bundled_model) -> None:
    """The state machine, with SAM's candidates scripted: followed, lost (absent output and an
    absent memory entry), looked for at the predicted and at the last box, found again."""
    model = bundled_model
    size = model.low_res_size
    raw = torch.zeros(1, model.sam.prompt_encoder.embed_dim, *model.embedding_size)
    frame = model.prepare_frame(raw, None)

    def mask_logits(box) -> torch.Tensor:
        out = torch.full((1, 1, *size), -10.0)
        x0, y0, x1, y1 = box
        out[..., y0:y1, x0:x1] = 10.0
        return out

    policy = ScriptedPolicy()
    script, prompts_seen = policy.script, policy.prompts_seen
    start = [10, 10, 20, 18]
    kf = BoxKalman(np.array(start, dtype=float))
    for _ in range(2):  # it has seen the object twice: it knows its velocity, and gates on it
        kf.predict()
        kf.update(np.array(start, dtype=float))
    assert kf.knows_velocity
    prior = mask_logits(start)

    # followed: the candidate that moved with the object wins over a confident jump
    script.append(
        [
            candidate([30, 30, 50, 50], 0.99),
            Candidate(mask_logits([11, 10, 21, 18]), 0.7, 2.0, np.array([11, 10, 21, 18.0])),
        ]
    )
    out, state = step(policy, model, frame, 1, prior, kf)
    assert (
        state is kf and out.presence_logits[0] > 0 and np.array_equal(logits_box_array(out.logits[0]), [11, 10, 21, 18])
    )
    assert prompts_seen[-1].mask_inputs is not None and prompts_seen[-1].boxes is not None  # the usual prompts

    # lost: nothing overlaps the prediction
    script.append([candidate([40, 40, 60, 60], 0.99)])
    out, _ = step(policy, model, frame, 2, out.logits, kf)
    assert out.presence_logits[0] < 0 and bool((out.logits == model.config.absent_logit).all())
    assert kf.lost == 1 and out.entries[0].presence < 0.5 and out.entries[0].iou == 0.0  # an absent entry

    # still lost: prompted with a box at the predicted place, then at the last seen box
    script.append([candidate([40, 40, 60, 60], 0.99)])
    script.append([candidate([41, 40, 61, 60], 0.99)])
    out, _ = step(policy, model, frame, 3, None, kf)
    assert kf.lost == 2 and out.presence_logits[0] < 0
    boxes = [p.boxes for p in prompts_seen[-2:]]
    assert all(b is not None and p.mask_inputs is None for b, p in zip(boxes, prompts_seen[-2:]))
    scale = model.image_size / size[1]
    assert torch.allclose(boxes[1], torch.tensor([[11, 10, 21, 18.0]]) * scale)  # the last seen box

    # found again where it was last seen
    script.append([candidate([40, 40, 60, 60], 0.99)])
    script.append([Candidate(mask_logits([12, 10, 22, 18]), 0.8, 1.0, np.array([12, 10, 22, 18.0]))])
    out, _ = step(policy, model, frame, 4, None, kf)
    assert (
        kf.lost == 0
        and out.presence_logits[0] > 0
        and np.array_equal(logits_box_array(out.logits[0]), [12, 10, 22, 18])
    )
    assert not script


def _video(num_frames: int = 8):
    cfg = SyntheticConfig(
        num_frames=num_frames, min_objects=2, max_objects=2, occlusion_prob=0.0, exit_prob=0.0, distractor_prob=0.0
    )
    return SyntheticVideoDataset("test", 1, config=cfg)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def test_predictor_tracks_with_motion_on(bundled_model) -> None:
    ds = _video()
    clip = ds.clip(0, range(8))
    results = {}
    for enabled in (False, True):
        policy = MotionAwarePolicy() if enabled else DefaultPolicy()
        predictor = i2v.I2VVideoPredictor(bundled_model, policy=policy)  # one predictor per policy
        state = predictor.init_state(clip.frames)
        for n, obj_id in enumerate(clip.obj_ids):
            predictor.add_new_mask(state, 0, int(obj_id), clip.masks[0, n])
        results[enabled] = {t: masks.clone() for t, _, masks in predictor.propagate_in_video(state)}
        filters = [tr.policy_state for tr in state.tracks.values()]
        assert all(isinstance(kf, BoxKalman) for kf in filters) == enabled
    assert torch.equal(results[True][0], results[False][0])  # the prompted frame is the prompt's
    for t in range(1, 8):
        masks = results[True][t]
        assert masks.shape == (2, 1, *clip.frames.shape[1:3]) and masks.dtype == torch.float32
        for n in range(2):
            assert _jaccard(masks[n, 0].numpy() > 0, clip.masks[t, n]) > 0.5  # an easy video: tracked


def test_eval_ablations_include_motion(bundled_model) -> None:
    ds = _video(num_frames=4)
    before = bundled_model.config
    results = run_methods(
        bundled_model, bundled_model, ds, ["mask"], baselines=False, ablations=True, trained=False, progress=False
    )
    labels = [r.method for r in results]
    assert "untrained upgrade, motion-aware selection on" in labels
    assert bundled_model.config == before  # ablations never leave the model changed
    results = run_methods(
        bundled_model, bundled_model, ds, ["mask"], baselines=False, ablations=False, trained=False, motion=True
    )
    assert [r.method for r in results] == ["untrained upgrade + motion"]


def test_builders_and_cli_choose_the_policy_and_saved_adapters_leave_it_out(tmp_path) -> None:
    from i2v.cli import main
    from i2v.pretrained import CONFIG_NAME, save_pretrained

    assert type(i2v.build_i2v_video_predictor("tiny", device="cpu").policy) is DefaultPolicy  # off by default
    assert isinstance(i2v.build_i2v_video_predictor("tiny", device="cpu", motion=True).policy, MotionAwarePolicy)
    custom = MotionAwarePolicy(MotionConfig(weight=0.5))
    assert i2v.build_i2v_video_predictor("tiny", device="cpu", policy=custom).policy is custom
    with pytest.raises(ConfigError, match="not both"):
        i2v.build_i2v_video_predictor("tiny", device="cpu", motion=True, policy=custom)
    with pytest.warns(DeprecationWarning, match="tracking policy"):  # the model has no such switch now
        model = i2v.build_sam_i2v("tiny", device="cpu", motion=True)
    saved = save_pretrained(model, tmp_path / "adapter")
    assert "motion" not in json.loads((saved / CONFIG_NAME).read_text())["config"]
    # An adapter saved by an earlier release with motion on still loads (the section is ignored).
    meta = json.loads((saved / CONFIG_NAME).read_text())
    meta["config"]["motion"] = {"enabled": True, "weight": 0.25, "min_iou": 0.3}
    (saved / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.warns(DeprecationWarning, match="motion=True"):
        predictor = i2v.build_i2v_video_predictor(checkpoint=saved, device="cpu")
    assert type(predictor.policy) is DefaultPolicy and predictor.model.config == model.config

    off = tmp_path / "off"
    argv = ["eval", "--dataset", "synthetic", "--num-videos", "1", "--checkpoint", str(saved), "--no-motion"]
    with pytest.warns(DeprecationWarning):
        assert main(argv + ["--device", "cpu", "--out", str(off)]) == 0
    assert [r["method"] for r in json.loads((off / "results.json").read_text())["results"]] == ["trained upgrade"]

    out = tmp_path / "eval"
    code = main(
        ["eval", "--dataset", "synthetic", "--num-videos", "1", "--motion", "--device", "cpu", "--out", str(out)]
    )
    assert code == 0
    payload = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in payload["results"]] == ["untrained upgrade + motion"]


def test_one_decoder_call_gives_sams_four_masks(bundled_model) -> None:
    model = bundled_model
    frame = model.prepare_frame(torch.randn(1, model.sam.prompt_encoder.embed_dim, *model.embedding_size), None)
    prompts = ObjectPrompts(boxes=torch.tensor([[10.0, 12.0, 70.0, 90.0]]))
    with torch.no_grad():
        cands = sam_candidates(model, frame, prompts, None)
        single = model.decode(frame, prompts, 1)
        multi = model.decode(frame, prompts, 1, multimask=True)
    assert len(cands) == 4
    assert torch.equal(cands[0].logits, single.all_low_res_logits[:, :1])
    assert all(torch.equal(c.logits, multi.all_low_res_logits[:, k : k + 1]) for k, c in enumerate(cands[1:]))
    assert [c.iou for c in cands] == pytest.approx(torch.cat([single.all_iou, multi.all_iou], 1)[0].tolist())


def test_a_new_filter_does_not_gate_before_it_knows_the_velocity(bundled_model) -> None:
    model = bundled_model
    frame = model.prepare_frame(torch.zeros(1, model.sam.prompt_encoder.embed_dim, *model.embedding_size), None)
    far = Candidate(torch.full((1, 1, *model.low_res_size), 10.0), 0.9, 1.0, np.array([30, 30, 40, 40.0]))
    policy = ScriptedPolicy(script=[[far], [far]])
    kf = BoxKalman(np.array([0, 0, 10, 10.0]))  # a fast object: 30 px in one frame
    out, _ = step(policy, model, frame, 1, None, kf)
    assert out.presence_logits[0] > 0 and kf.lost == 0 and kf.updates == 1
    out, _ = step(policy, model, frame, 2, None, kf)  # it moved again: still followed
    assert out.presence_logits[0] > 0 and kf.knows_velocity


def test_boxes_are_clipped_to_the_picture() -> None:
    extent = (36, 64)  # a 16:9 frame in a 64 px mask: rows 36-63 are padding
    assert clip_box(np.array([20, 50, 30, 60.0]), extent) is None
    assert np.array_equal(clip_box(np.array([58, 30, 70, 40.0]), extent), [58, 30, 64, 36])
    assert np.array_equal(clip_box(np.array([10, 10, 10.5, 20.0]), extent), [9.25, 10, 11.25, 20])


def test_choice_skips_swollen_unsure_and_outside_candidates() -> None:
    anchor = np.array([10, 10, 20, 20.0])
    fits = candidate([10, 10, 20, 20], 0.6)
    swollen = candidate([5, 5, 25, 25], 0.95)  # 4x the area: ran onto a neighbour
    assert choose_candidate([fits, swollen], anchor, 0.25, 0.2) is swollen
    assert choose_candidate([fits, swollen], anchor, 0.25, 0.2, max_area=150.0) is fits
    assert choose_candidate([fits], anchor, 0.25, 0.2, min_score=0.7) is None
    region = np.array([0, 0, 22, 22.0])
    half_out = candidate([16, 10, 26, 20], 0.9)  # 60 % inside the region
    assert choose_candidate([half_out, fits], anchor, 0.25, 0.0, region=region) is fits
    assert choose_candidate([half_out], anchor, 0.25, 0.0, region=np.array([0, 0, 30, 30.0])) is half_out


def test_reference_box_is_the_recent_largest_and_search_regions_grow() -> None:
    kf = BoxKalman(np.array([10, 10, 20, 20.0]))
    for x0 in (12, 14, 16):  # cut by an occluder from the left
        kf.predict()
        kf.update(np.array([x0, 10, 20, 20.0]))
    assert np.array_equal(kf.reference_box(), [10, 10, 20, 20])
    for _ in range(motion._RECENT):
        kf.predict()
        kf.update(np.array([16, 10, 20, 20.0]))
    assert np.array_equal(kf.reference_box(), [16, 10, 20, 20])  # the full size is forgotten

    cfg = MotionConfig(search_growth=0.5, max_search=3.0)
    kf = BoxKalman(np.array([2, 10, 12, 18.0]))  # 10 x 8, still
    sides = []
    for _ in range(6):
        kf.mark_lost()
        kf.predict()
        (prompt, region), (prompt_last, _) = search_boxes(kf, (64, 64), cfg)
        assert np.allclose(prompt, [2, 10, 12, 18]) and np.allclose(prompt_last, [2, 10, 12, 18])
        sides.append(region[2] - region[0])
    assert np.allclose(sides, [10 * min(1 + 0.5 * n, 3.0) for n in range(1, 7)])
    # An object that left the picture is looked for at the edge it left by.
    gone = BoxKalman(np.array([-30, 10, -20, 18.0]))
    gone.mark_lost()
    gone.predict()
    prompt, region = search_boxes(gone, (64, 64), cfg)[0]
    assert np.allclose(prompt, [0, 10, 5, 18]) and region[0] < 0 < region[2]
    assert search_boxes(gone, (64, 64), cfg)[0][1][0] == pytest.approx(-7.5)  # centred on the edge


def _scripted_model(model):
    """A frame of ``model``, a policy whose candidates come from a script, and the script."""
    size = model.low_res_size
    frame = model.prepare_frame(torch.zeros(1, model.sam.prompt_encoder.embed_dim, *model.embedding_size), None)
    policy = ScriptedPolicy()
    script = policy.script

    def cand(box, iou: float = 0.8) -> Candidate:
        logits = torch.full((1, 1, *size), -10.0)
        x0, y0, x1, y1 = box
        logits[..., y0:y1, x0:x1] = 10.0
        return Candidate(logits, iou, 1.0, np.array(box, dtype=float))

    return frame, policy, script, cand


def _seen_still(box) -> BoxKalman:
    kf = BoxKalman(np.array(box, dtype=float))
    for _ in range(3):
        kf.predict()
        kf.update(np.array(box, dtype=float))
    return kf


def test_an_object_leaving_the_frame_is_followed_to_the_edge(bundled_model) -> None:
    frame, policy, script, cand = _scripted_model(bundled_model)
    x0s = range(34, -12, -6)  # 10 px wide, 6 px per frame to the left
    kf = BoxKalman(np.array([40, 10, 50, 20.0]))
    for k, x0 in enumerate(x0s):
        visible = [max(x0, 0), 10, x0 + 10, 20]
        if visible[2] <= 0:
            break
        script.append([cand(visible)])
        out = step(policy, bundled_model, frame, k + 1, None, kf)[0]
        assert out.presence_logits[0] > 0 and kf.lost == 0, f"lost at x0={x0}"
    assert np.array_equal(kf.last, [0, 10, 2, 20])  # the last sliver


def test_a_mask_swelling_onto_an_occluder_is_not_taken(bundled_model) -> None:
    frame, policy, script, cand = _scripted_model(bundled_model)
    kf = _seen_still([10, 10, 20, 20])
    # SAM rates the merged mask (object + occluder, 224 px) above the object's uncovered part.
    script.append([cand([8, 4, 22, 20], 0.9), cand([10, 14, 20, 20], 0.5)])
    out = step(policy, bundled_model, frame, 4, None, kf)[0]
    assert out.presence_logits[0] > 0 and np.array_equal(logits_box_array(out.logits[0]), [10, 14, 20, 20])
    script.append([cand([8, 4, 22, 20], 0.9)])  # only the merged mask is left: lost, not swapped
    out = step(policy, bundled_model, frame, 5, None, kf)[0]
    assert out.presence_logits[0] < 0 and kf.lost == 1


def test_a_lost_object_is_found_further_away_as_time_passes(bundled_model) -> None:
    frame, policy, script, cand = _scripted_model(bundled_model)
    kf = _seen_still([10, 10, 20, 20])
    script.append([cand([40, 40, 50, 50])])
    step(policy, bundled_model, frame, 4, None, kf)[0]
    assert kf.lost == 1
    back = [18, 12, 28, 22]  # came back 8 px to the right of where it was lost
    for frame_idx, lost in ((5, 2), (6, 3)):  # searched where predicted, then where last seen
        script.extend([[cand(back)], [cand(back)]])
        step(policy, bundled_model, frame, frame_idx, None, kf)[0]
        assert kf.lost == lost  # the search region (1.5, then 2 object sizes) does not hold it yet
    script.extend([[cand(back, iou=0.3)], [cand(back, iou=0.3)]])
    step(policy, bundled_model, frame, 7, None, kf)[0]
    assert kf.lost == 4  # inside the region now (2.5 sizes), but SAM is unsure of it
    script.append([cand(back)])
    out = step(policy, bundled_model, frame, 8, None, kf)[0]
    assert kf.lost == 0 and out.presence_logits[0] > 0 and np.array_equal(logits_box_array(out.logits[0]), back)
    assert not script


def test_prompts_restart_the_filter_in_passes_and_streams(bundled_model) -> None:
    clip = _video().clip(0, range(8))
    predictor = i2v.I2VVideoPredictor(bundled_model, policy=MotionAwarePolicy())
    state = predictor.init_state(clip.frames)
    predictor.add_new_mask(state, 0, 1, clip.masks[0, 0])
    for _ in range(2):  # a second pass starts from the prompt again, not from the first's end
        list(predictor.propagate_in_video(state))
        kf = state.tracks[1].policy_state
        assert kf.updates == 7  # started from the prompt on frame 0, then one box per frame

    stream = predictor.init_stream()
    predictor.add_frame(stream, clip.frames[0])
    predictor.add_new_mask(stream, 0, 1, clip.masks[0, 0])
    for t in range(1, 4):
        predictor.track(stream, clip.frames[t])
    _, _, masks = predictor.add_new_mask(stream, 3, 1, clip.masks[3, 0])  # a correction
    kf = stream.tracks[1].policy_state
    assert kf.updates == 0 and np.array_equal(
        kf.last, logits_box_array(stream.tracks[1].prompted_outputs[3].low_res_logits)
    )
    _, _, masks = predictor.track(stream, clip.frames[4])
    assert masks.dtype == torch.float32 and stream.tracks[1].policy_state.updates == 1
