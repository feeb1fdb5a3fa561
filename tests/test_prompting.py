"""One "prompt an object" operation (i2v.prompting) for the predictor and for training: a
simulated user's prompts, replayed through the predictor, give exactly training's outputs."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import pytest
import torch

import i2v
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.prompting import PRIOR_CLAMP, correction_prior, prompt_with_points
from i2v.train.clip_step import clip_loss, prepare_clip
from i2v.train.losses import LossWeights
from i2v.train.prompts import PromptSimConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T = 6


@pytest.fixture(scope="module")
def model():
    """The tiny model with non-zero adapters (seeded), so every learned path counts."""
    m = i2v.build_sam_i2v("tiny", device="cpu")
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in m.adapter_parameters().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return m.eval()


@pytest.fixture(scope="module")
def video(model) -> Tuple[np.ndarray, np.ndarray]:
    """(T, S, S, 3) frames at SAM's input size and (T, N, S, S) masks made of 2x2 blocks, so a
    frame's video pixels are SAM's input pixels and its masks are exact at the decoder's size."""
    s = model.image_size
    cfg = SyntheticConfig(
        height=s, width=s, num_frames=T, min_objects=2, max_objects=2, occlusion_prob=0.0, exit_prob=0.0
    )
    clip = SyntheticVideoDataset("val", 1, config=cfg, seed=3).clip(0, range(T))
    step = s // model.low_res_size[1]
    low = clip.masks[:, :, ::step, ::step]
    masks = np.kron(low, np.ones((1, 1, step, step), dtype=bool)).astype(bool)
    assert masks[:, :, :, :].reshape(T, masks.shape[1], -1).any(axis=2).all()  # always visible
    return np.ascontiguousarray(clip.frames), masks


def _training(model, video, sim: PromptSimConfig, seed: int):
    frames, masks = video
    clip = prepare_clip(model, torch.as_tensor(frames).permute(0, 3, 1, 2), torch.as_tensor(masks))
    with torch.no_grad():
        emb = model.encode_images(clip.images)
    return clip_loss(model, emb, clip.gt, torch.ones(T, dtype=torch.bool), sim, LossWeights(), seed)


def _replay(model, video, out) -> Dict[Tuple[int, int], torch.Tensor]:
    """The simulated user's prompts given to the predictor: conditioning prompts first, then a
    propagation, then each correction on its tracked frame. Returns (frame, object) -> the
    predictor's (1, 4h, 4w) low-resolution output there."""
    frames, masks = video
    scale = model.image_size / model.low_res_size[1]  # the masks' pixels -> the video's pixels
    predictor = i2v.I2VVideoPredictor(model, progress=False)
    state = predictor.init_state(frames)
    for p in out.prompts:
        if p.kind == "mask":
            predictor.add_new_mask(state, p.frame_idx, p.obj_index + 1, masks[p.frame_idx, p.obj_index])
        elif p.kind == "points":
            predictor.add_new_points_or_box(state, p.frame_idx, p.obj_index + 1, (p.points * scale).numpy(), p.labels)
        elif p.kind == "box":
            predictor.add_new_points_or_box(state, p.frame_idx, p.obj_index + 1, box=(p.box * scale).numpy())
    seen = {}
    for t, _, _ in predictor.propagate_in_video(state):
        for n in range(masks.shape[1]):
            seen[t, n] = state.tracks[n + 1].output(t).low_res_logits[0].clone()
    for p in out.prompts:
        if p.kind == "correction":
            pts = (p.points * scale).numpy()
            predictor.add_new_points_or_box(state, p.frame_idx, p.obj_index + 1, pts, p.labels)
            seen[p.frame_idx, p.obj_index] = state.tracks[p.obj_index + 1].output(p.frame_idx).low_res_logits[0]
    return seen


@pytest.mark.parametrize(
    "kind, seed",
    [("points", 0), ("points", 1), ("box", 2), ("mask", 3)],
)
def test_training_prompts_objects_exactly_as_the_predictor(model, video, kind, seed) -> None:
    probs = {"points": (1.0, 0.0, 0.0), "box": (0.0, 1.0, 0.0), "mask": (0.0, 0.0, 1.0)}[kind]
    sim = PromptSimConfig(
        point_prob=probs[0],
        box_prob=probs[1],
        mask_prob=probs[2],
        second_cond_prob=0.0,
        correction_prob=1.0,
        max_correction_frames=2,
        prior_dropout=0.0,
    )
    out = _training(model, video, sim, seed)
    corrections = [p for p in out.prompts if p.kind == "correction"]
    assert {p.kind for p in out.prompts} - {"correction"} == {kind} and corrections
    first = min(p.frame_idx for p in corrections)
    seen = _replay(model, video, out)
    # The prompted frame, the tracked frames before the first correction, and that correction.
    compared = [(t, n) for (t, n) in seen if t < first] + [
        (first, p.obj_index) for p in corrections if p.frame_idx == first
    ]
    assert len(compared) > 2
    for t, n in compared:
        assert torch.equal(out.low_res_logits[t, n], seen[t, n]), f"frame {t}, object {n}"


def test_a_correction_of_an_absent_object_starts_from_the_clamped_prior(model) -> None:
    frame = model.prepare_frame(torch.randn(1, model.sam.prompt_encoder.embed_dim, *model.embedding_size), None)
    absent = torch.full((1, 1, *model.low_res_size), model.config.absent_logit)
    assert float(correction_prior(absent, model.device).min()) == -PRIOR_CLAMP
    click, label = torch.tensor([[40.0, 50.0]]), torch.tensor([1])
    with torch.no_grad():
        a = prompt_with_points(model, frame, 3, click, label, previous=absent)
        b = prompt_with_points(model, frame, 3, click, label, previous=torch.full_like(absent, -PRIOR_CLAMP))
    assert torch.equal(a.logits, b.logits) and a.decoded is not None and a.decoded.all_low_res_logits.shape[1] == 1
    assert a.entry.prompted and a.presence_logit > 0
