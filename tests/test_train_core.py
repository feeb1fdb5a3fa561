"""Training core: simulated prompts, losses, and the clip forward (same steps as inference)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from i2v.build import build_sam_i2v
from i2v.config import load_model_config
from i2v.data.synthetic import SyntheticConfig, generate_video
from i2v.memory_bank import MemoryBank
from i2v.model import SamI2V
from i2v.tracking_ops import mask_prompt_logits, mask_to_low_res, track_objects
from i2v.train.clip_step import ClipLossOutput, PreparedClip, clip_loss, prepare_clip
from i2v.train.losses import (
    LossWeights,
    dice_loss,
    mask_iou,
    mask_prediction_loss,
    pair_losses,
    reduce_losses,
    sigmoid_focal_loss,
)
from i2v.train.prompts import PromptSimConfig, mask_box, sample_box, sample_corrective_click, sample_points
from i2v.video_predictor import I2VVideoPredictor

ADAPTERS = ("upgrader", "memory_readout", "presence_head")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model() -> SamI2V:
    """The tiny config with every adapter on (its bundled YAML switches the upgrader off)."""
    cfg = load_model_config("tiny")
    cfg = dataclasses.replace(cfg, upgrader=dataclasses.replace(cfg.upgrader, enabled=True))
    return build_sam_i2v(cfg, allow_random_sam=True, device="cpu", seed=0).train()


def _perturb_adapters(model: SamI2V, seed: int = 1) -> None:
    """Give the zero-initialised adapter outputs some weight so every path matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def _video(height: int = 64, width: int = 80, num_frames: int = 5, seed: int = 3):
    v = generate_video(seed, SyntheticConfig(height=height, width=width, num_frames=num_frames))
    return torch.from_numpy(v.frames).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(v.masks)


@pytest.fixture(scope="module")
def clip():
    """A 5-frame 64x80 synthetic clip, prepared, with its frozen-encoder embeddings."""
    model = _model()
    frames, masks = _video()
    prepared = prepare_clip(model, frames, masks)
    return frames, masks, prepared, model.encode_images(prepared.images)


def _disc(h: int = 40, w: int = 50, cy: float = 20, cx: float = 22, r: float = 9) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


# -- prompts -------------------------------------------------------------------------------------
def test_prompt_config_is_validated():
    with pytest.raises(ValueError, match="must be 1"):
        PromptSimConfig(point_prob=0.5, box_prob=0.5, mask_prob=0.5)
    with pytest.raises(ValueError, match="max_points"):
        PromptSimConfig(max_points=0)
    with pytest.raises(ValueError, match="correction_prob"):
        PromptSimConfig(correction_prob=1.5)
    rng = np.random.default_rng(0)
    kinds = [PromptSimConfig(0.5, 0.3, 0.2).sample_kind(rng) for _ in range(2000)]
    assert abs(kinds.count("points") / 2000 - 0.5) < 0.05 and abs(kinds.count("mask") / 2000 - 0.2) < 0.05


def test_points_lie_inside_the_mask():
    mask = _disc()
    coords, labels = sample_points(mask, 6, np.random.default_rng(0))
    assert coords.shape == (6, 2) and labels.tolist() == [1] * 6
    assert all(bool(mask[int(y), int(x)]) for x, y in coords.tolist())  # XY order


def test_points_on_an_empty_mask_are_negative_clicks():
    coords, labels = sample_points(torch.zeros(10, 12, dtype=torch.bool), 2, 0)
    assert labels.tolist() == [0, 0] and (coords[:, 0] < 12).all() and (coords[:, 1] < 10).all()


def test_box_is_tight_without_noise_and_close_with_it():
    mask = _disc()
    tight = mask_box(mask)
    assert torch.equal(sample_box(mask, 0.0, 0), torch.from_numpy(tight))
    assert tight.tolist() == [13, 11, 31, 29]
    side = np.array([19, 19, 19, 19], dtype=np.float32)
    for seed in range(50):
        box = sample_box(mask, 0.1, seed).numpy()
        assert (np.abs(box - tight) <= 2 * 0.1 * side + 1e-4).all()
        assert box[0] < box[2] and box[1] < box[3]
    with pytest.raises(ValueError, match="non-empty"):
        sample_box(torch.zeros(5, 5, dtype=torch.bool), 0.1, 0)


def test_corrective_click_targets_the_larger_error_with_the_right_label():
    gt = torch.zeros(40, 40, dtype=torch.bool)
    gt[5:25, 5:25] = True
    missed = gt.clone()
    missed[5:25, 15:25] = False  # 200 false-negative pixels
    missed[30:33, 30:33] = True  # 9 false-positive pixels
    xy, label = sample_corrective_click(missed, gt, 0)
    assert label == 1 and bool(gt[int(xy[1]), int(xy[0])]) and not bool(missed[int(xy[1]), int(xy[0])])
    spilled = gt.clone()
    spilled[5:25, 25:39] = True  # 280 false positives
    spilled[5:7, 5:7] = False  # 4 false negatives
    xy, label = sample_corrective_click(spilled, gt, 0)
    assert label == 0 and bool(spilled[int(xy[1]), int(xy[0])]) and not bool(gt[int(xy[1]), int(xy[0])])
    assert sample_corrective_click(gt, gt, 0) is None
    # jitter 0: among the deepest pixels of the error, 5 from the sides of the missed block
    # (rows 5-24, columns 15-24), so on its middle columns and never near its ends
    for seed in range(10):
        xy, _ = sample_corrective_click(missed, gt, seed, jitter=0.0)
        assert 19 <= xy[0] <= 20 and 9 <= xy[1] <= 20


def test_prompt_sampling_is_deterministic():
    mask = _disc()
    a = sample_points(mask, 3, np.random.default_rng(7))
    b = sample_points(mask, 3, np.random.default_rng(7))
    c = sample_points(mask, 3, np.random.default_rng(8))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert torch.equal(sample_box(mask, 0.1, 5), sample_box(mask, 0.1, 5))
    pred = torch.zeros_like(mask)
    assert torch.equal(sample_corrective_click(pred, mask, 3)[0], sample_corrective_click(pred, mask, 3)[0])


# -- losses --------------------------------------------------------------------------------------
def test_focal_dice_iou_hand_values():
    zero = torch.zeros(1, 1)
    assert sigmoid_focal_loss(zero, torch.ones(1, 1)).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    assert sigmoid_focal_loss(zero, torch.zeros(1, 1)).item() == pytest.approx(0.75 * 0.25 * math.log(2))
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    # p = 0.5 everywhere: 1 - (2 * 0.5 + 1) / (2 + 1 + 1)
    assert dice_loss(logits, target).item() == pytest.approx(0.5)
    pred = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
    assert mask_iou(pred, target).item() == pytest.approx(0.5)
    # IoU head: predicted 0.8 for a mask whose IoU is 0.5
    out = mask_prediction_loss(
        pred[None, None], torch.tensor([[0.8]]), torch.tensor([0.0]), target[None].bool(), LossWeights()
    )
    assert out["iou"].item() == pytest.approx(0.3)
    assert out["presence"].item() == pytest.approx(math.log(2))


def test_perfect_prediction_has_near_zero_loss():
    gt = _disc(16, 16, 8, 8, 4)[None]
    logits = (gt.float() * 2 - 1) * 30
    out = mask_prediction_loss(logits[:, None], torch.ones(1, 1), torch.tensor([30.0]), gt, LossWeights())
    assert out["total"].item() < 1e-6


def test_absent_objects_get_the_presence_loss_only():
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[0, 2:5, 2:5] = True
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    iou = torch.rand(2, 1, requires_grad=True)
    presence = torch.tensor([1.0, 2.0], requires_grad=True)
    w = LossWeights()
    both = mask_prediction_loss(logits, iou, presence, gt, w)
    first = mask_prediction_loss(logits[:1], iou[:1], presence[:1], gt[:1], w)
    for name in ("focal", "dice", "iou"):
        assert both[name].item() == pytest.approx(first[name].item())
    both["total"].backward()
    assert logits.grad[1].abs().sum() == 0 and iou.grad[1].abs().sum() == 0
    assert presence.grad[1] != 0
    # nothing present: finite, mask terms exactly zero
    empty = mask_prediction_loss(
        torch.randn(2, 3, 8, 8), torch.rand(2, 3), torch.zeros(2), torch.zeros(2, 8, 8, dtype=torch.bool), w
    )
    assert all(torch.isfinite(v) for v in empty.values())
    assert empty["focal"].item() == 0 and empty["dice"].item() == 0 and empty["iou"].item() == 0


def test_unsupervised_pairs_do_not_count():
    gt = _disc(8, 8, 4, 4, 2)[None].expand(2, -1, -1)
    logits, iou, presence = torch.randn(2, 1, 8, 8), torch.rand(2, 1), torch.zeros(2)
    logits[1] = float("nan")  # garbage on the unannotated frame must not leak
    out = mask_prediction_loss(logits, iou, presence, gt, LossWeights(), supervised=torch.tensor([True, False]))
    ref = mask_prediction_loss(logits[:1], iou[:1], presence[:1], gt[:1], LossWeights())
    for name, value in ref.items():
        assert out[name].item() == pytest.approx(value.item()), name


def test_multimask_supervises_the_best_candidate_and_every_iou():
    gt = _disc(16, 16, 8, 8, 4)[None]
    good = (gt.float() * 2 - 1) * 30
    logits = torch.stack([torch.randn(16, 16), good[0], torch.randn(16, 16)])[None].requires_grad_(True)
    iou = torch.tensor([[0.5, 0.9, 0.5]], requires_grad=True)
    out = mask_prediction_loss(logits, iou, torch.tensor([30.0]), gt, LossWeights())
    assert out["focal"].item() < 1e-6 and out["dice"].item() < 1e-6
    actual = mask_iou(logits.detach(), gt[:, None].expand(-1, 3, -1, -1))[0]
    assert out["iou"].item() == pytest.approx(((torch.tensor([0.5, 0.9, 0.5]) - actual).abs().mean()).item())
    out["total"].backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 2].abs().sum() == 0
    assert (iou.grad != 0).all()


# -- prepare_clip --------------------------------------------------------------------------------
def test_prepare_clip_matches_sam_preprocessing_and_aligns_gt(clip):
    frames, masks, prepared, _ = clip
    model = _model()
    t, n = masks.shape[:2]
    assert prepared.images.shape == (t, 3, model.image_size, model.image_size) and prepared.gt.shape == (
        t,
        n,
        *model.low_res_size,
    )
    for i in range(t):
        x, size = model.preprocess(frames[i].permute(1, 2, 0).numpy())
        assert torch.equal(prepared.images[i : i + 1], x) and size == prepared.input_size
    logits = (prepared.gt.reshape(t * n, 1, *model.low_res_size).float() * 2 - 1) * 10
    back = model.sam.postprocess_masks(logits, prepared.input_size, prepared.original_size) > 0
    back = back.reshape(t, n, *masks.shape[-2:])
    inter = (back & masks).flatten(2).sum(-1).float()
    union = (back | masks).flatten(2).sum(-1).float()
    present = masks.flatten(2).any(-1)
    iou = (inter / union.clamp(min=1))[present]
    # the tiny SAM's 64x64 mask grid quantises small objects: high on average, never far off
    assert iou.mean() > 0.9 and iou.min() > 0.75
    assert torch.equal(prepared.presence, prepared.gt.flatten(2).any(-1))


def test_mask_to_low_res_is_exact_on_aligned_blocks():
    mask = torch.zeros(1, 256, 256, dtype=torch.bool)
    mask[0, 64:128, 32:96] = True
    frac = mask_to_low_res(mask, (256, 256), 256, (128, 128))
    assert torch.equal(frac[0, 0] > 0.5, mask[0, ::2, ::2]) and set(frac.unique().tolist()) == {0.0, 1.0}
    assert mask_prompt_logits(frac).abs().max() == 10


# -- shared tracking step --------------------------------------------------------------------------
def test_track_objects_batches_like_one_object_at_a_time(clip):
    _, _, prepared, emb = clip
    model = _model().eval()
    _perturb_adapters(model)
    with torch.no_grad():
        f0 = model.prepare_frame(emb[:1])
        banks = [MemoryBank(16, model.config.memory.filter) for _ in range(3)]
        priors = [mask_prompt_logits(prepared.gt[0, i % 2])[None, None] for i in range(3)]
        for i, bank in enumerate(banks):
            bank.add(model.make_memory(f0, 0, priors[i], torch.ones(1), torch.tensor([10.0]), prompted=True)[0])
        f1 = model.prepare_frame(emb[1:2], f0.pooled[:, None])
        mems = [b.select(1, f1.descriptor) for b in banks]
        mixed = [priors[0], None, priors[2]]
        together = track_objects(model, f1, 1, mixed, mems)
        for i in range(3):
            alone = track_objects(model, f1, 1, [mixed[i]], [mems[i]])
            torch.testing.assert_close(together.raw_logits[i], alone.raw_logits[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(together.presence_logits[i], alone.presence_logits[0], atol=1e-4, rtol=1e-4)


# -- clip_loss -------------------------------------------------------------------------------------
def _run(model: SamI2V, prepared: PreparedClip, emb: torch.Tensor, seed, sim=None, annotated=None) -> ClipLossOutput:
    t = emb.shape[0]
    annotated = torch.ones(t, dtype=torch.bool) if annotated is None else annotated
    return clip_loss(model, emb, prepared.gt, annotated, sim or PromptSimConfig(), LossWeights(), seed)


def test_clip_loss_trains_every_adapter_and_never_sam(clip):
    _, _, prepared, emb = clip
    model = _model()
    sim = PromptSimConfig(second_cond_prob=1.0, correction_prob=1.0)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    for step in range(2):  # after one step the zero-initialised outputs pass gradients upstream
        opt.zero_grad()
        out = _run(model, prepared, emb, step, sim)
        assert torch.isfinite(out.total) and out.total.requires_grad
        out.total.backward()
        opt.step()
    for name in ADAPTERS:
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]  # calibrated ones: none
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert all(p.grad is None and not p.requires_grad for p in model.sam.parameters())
    assert out.low_res_logits.shape == (5, prepared.gt.shape[1], 1, *model.low_res_size)
    assert not out.low_res_logits.requires_grad and len(out.cond_frames) == 2
    corrected = [p for p in out.prompts if p.kind == "correction"]
    assert corrected and {p.frame_idx for p in corrected} == set(out.correction_frames)
    for p in corrected:  # the correction is the frame's output now, as in the predictor
        assert out.presence_logits[p.frame_idx, p.obj_index] == 10.0


def test_a_clip_with_nothing_to_decode_gives_a_zero_loss_with_a_graph(clip):
    _, _, prepared, emb = clip
    model = _model()
    sim = PromptSimConfig(point_prob=0.0, box_prob=0.0, mask_prob=1.0)
    out = clip_loss(model, emb[:1], prepared.gt[:1], torch.ones(1, dtype=torch.bool), sim, LossWeights(), 0)
    assert out.total.item() == 0 and out.num_supervised == 0
    out.total.backward()
    assert torch.equal(out.low_res_logits[0, :, 0] > 0, prepared.gt[0])


def test_clip_loss_is_deterministic_given_the_seed(clip):
    _, _, prepared, emb = clip
    model = _model()
    sim = PromptSimConfig(second_cond_prob=0.5, correction_prob=0.5)
    a, b = _run(model, prepared, emb, 11, sim), _run(model, prepared, emb, np.random.default_rng(11), sim)
    assert a.terms == b.terms and torch.equal(a.low_res_logits, b.low_res_logits)
    assert (a.cond_frames, a.correction_frames) == (b.cond_frames, b.correction_frames)
    assert [(p.kind, p.points, p.box) for p in a.prompts].__repr__() == [
        (p.kind, p.points, p.box) for p in b.prompts
    ].__repr__()
    others = [_run(model, prepared, emb, s, sim) for s in range(4)]
    assert len({(o.terms["total"], tuple(o.cond_frames)) for o in others}) > 1


def test_unannotated_frames_are_tracked_but_not_supervised(clip):
    _, _, prepared, emb = clip
    model = _model()
    sim = PromptSimConfig(
        point_prob=1.0, box_prob=0.0, mask_prob=0.0, max_points=1, second_cond_prob=0.0, correction_prob=0.0
    )
    annotated = torch.tensor([True, True, False, True, False])
    out = _run(model, prepared, emb, 0, sim, annotated)
    n = prepared.gt.shape[1]
    assert out.num_supervised == 3 * n  # frame 0 (prompted) + frames 1 and 3
    scrambled = PreparedClip(
        prepared.gt.clone(), prepared.gt.clone(), prepared.presence, prepared.input_size, prepared.original_size
    )
    scrambled.gt[[2, 4]] = ~scrambled.gt[[2, 4]]
    assert _run(model, scrambled, emb, 0, sim, annotated).terms == out.terms


def test_twenty_steps_overfit_one_clip(clip):
    _, _, prepared, emb = clip
    model = _model()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    sim = PromptSimConfig(second_cond_prob=0.0, correction_prob=0.0)
    terms = []
    for _ in range(20):
        opt.zero_grad()
        out = _run(model, prepared, emb, 0, sim)  # the same prompts every step: one fixed problem
        out.total.backward()
        opt.step()
        terms.append(out.terms)
    total = [t["total"] for t in terms]
    # about -30 % in 20 steps on a random SAM (the prompted frame's decode has no adapter in it)
    assert total[-1] < 0.8 * total[0] and sum(total[-5:]) < sum(total[:5]), total
    assert terms[-1]["focal"] < 0.8 * terms[0]["focal"], terms


def test_clip_loss_follows_the_video_predictor(clip):
    """Frame 0 clicked or boxed, the rest tracked: training's outputs are the predictor's."""
    model = _model().eval()
    _perturb_adapters(model)
    # A square video: SAM's input frame is the whole video, so a low-res click (x, y) is the
    # video click (s x, s y) and both paths get the same prompt coordinates.
    frames, masks = _video(256, 256, 4, seed=5)
    s = 256 / model.low_res_size[0]
    prepared = prepare_clip(model, frames, masks)
    with torch.no_grad():
        emb = torch.cat([model.encode_images(prepared.images[i : i + 1]) for i in range(4)])
        sim = PromptSimConfig(
            point_prob=0.5,
            box_prob=0.5,
            mask_prob=0.0,
            max_points=1,
            second_cond_prob=0.0,
            correction_prob=0.0,
            prior_dropout=0.0,
        )  # the predictor never withholds a prior
        assert bool(prepared.presence.all()), "a hidden object would have its prior withheld in training"
        out = _run(model, prepared, emb, 4, sim)
        predictor = I2VVideoPredictor(model)
        state = predictor.init_state(frames.permute(0, 2, 3, 1).numpy())
        assert [(p.frame_idx, p.obj_index) for p in out.prompts] == [(0, i) for i in range(masks.shape[1])]
        assert {p.kind for p in out.prompts} == {"points", "box"}  # a single click (multimask) and a box
        for p in out.prompts:
            if p.kind == "points":
                predictor.add_new_points_or_box(
                    state, 0, p.obj_index + 1, points=(p.points * s).numpy(), labels=p.labels.numpy()
                )
            else:
                predictor.add_new_points_or_box(state, 0, p.obj_index + 1, box=(p.box * s).numpy())
        list(predictor.propagate_in_video(state))
        for t in range(4):
            for obj in range(masks.shape[1]):
                expected = state.tracks[obj + 1].output(t).low_res_logits[0]
                torch.testing.assert_close(out.low_res_logits[t, obj], expected, atol=1e-5, rtol=1e-5)


# -- memory's job in training ----------------------------------------------------------------------
def test_priors_are_withheld_at_random_and_always_after_a_gap():
    from i2v.train.clip_step import _withheld

    present = torch.tensor([[True, True], [False, True], [True, True]])
    rng = np.random.default_rng(0)
    never = PromptSimConfig(prior_dropout=0.0)
    assert _withheld(present, 1, never, rng) == [False, False]
    assert _withheld(present, 2, never, rng) == [True, False]  # object 0 was hidden on frame 1
    draws = [_withheld(present, 1, PromptSimConfig(prior_dropout=0.4), rng)[1] for _ in range(2000)]
    assert 0.35 < np.mean(draws) < 0.45
    with pytest.raises(ValueError, match="prior_dropout"):
        PromptSimConfig(prior_dropout=1.5)


def test_read_out_loss_counts_present_pairs_that_read_memory_even_when_not_decoded():
    gt = torch.zeros(3, 8, 8, dtype=torch.bool)
    gt[:2, 2:6, 2:6] = True  # objects 0 and 1 present, object 2 absent
    logits = torch.full((3, 1, 8, 8), -1024.0)  # outputs nobody decoded: constants
    logits[1] = 0.0  # object 1 was decoded
    readout = torch.zeros(3, 1, 8, 8, requires_grad=True)
    parts = pair_losses(
        logits,
        torch.zeros(3, 1),
        torch.full((3,), -10.0),
        gt,
        LossWeights(),
        readout_logits=readout,
        has_readout=torch.tensor([True, False, True]),
        decoded=torch.tensor([False, True, False]),
    )
    assert parts.present.tolist() == [False, True, False]  # mask terms: decoded pairs only
    assert parts.has_readout.tolist() == [True, False, False]  # read memory and present
    terms = reduce_losses([parts], LossWeights())
    terms["readout"].backward()
    assert readout.grad[0].abs().sum() > 0 and readout.grad[1:].abs().sum() == 0
    assert torch.isfinite(terms["total"]) and terms["total"] < 100  # the -1024 constants are left out
