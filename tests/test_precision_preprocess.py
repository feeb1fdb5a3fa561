"""MedSAM preprocessing as part of the model's identity, and reduced precision that cannot crash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import i2v
from i2v.build import build_sam_i2v
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.errors import CheckpointError, ConfigError
from i2v.pretrained import CONFIG_NAME, save_pretrained
from i2v.sam_builder import load_sam
from i2v.train.feature_cache import FeatureCache

BOX = [20.0, 25.0, 70.0, 80.0]


# -- MedSAM ------------------------------------------------------------------------------------


def _medsam_reference(sam, image: np.ndarray, box) -> torch.Tensor:
    """MedSAM's own recipe, written out: squash to S x S (bicubic), min-max to [0, 1], no
    mean/std; the box scaled by S / W and S / H; SAM's decoder; logits back to the frame."""
    s = sam.image_encoder.img_size
    h, w = image.shape[:2]
    resized = np.asarray(Image.fromarray(image).resize((s, s), Image.BICUBIC)).astype(np.float32)
    resized = (resized - resized.min()) / max(resized.max() - resized.min(), 1e-8)
    x = torch.as_tensor(resized).permute(2, 0, 1)[None]
    box_s = torch.tensor([box], dtype=torch.float) * torch.tensor([s / w, s / h, s / w, s / h])
    with torch.no_grad():
        emb = sam.image_encoder(x)
        sparse, dense = sam.prompt_encoder(points=None, boxes=box_s, masks=None)
        low, _ = sam.mask_decoder(
            image_embeddings=emb,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    return sam.postprocess_masks(low, (s, s), (h, w))[0, 0]


def test_medsam_preprocessing_equals_medsam_recipe(tiny_sam_file: Path, image: np.ndarray) -> None:
    predictor = i2v.build_i2v_video_predictor(sam_checkpoint=tiny_sam_file, device="cpu", preprocess="medsam")
    state = predictor.init_state([image, image])
    _, _, masks = predictor.add_new_points_or_box(state, 0, 1, box=BOX)
    ref = _medsam_reference(load_sam("tiny", tiny_sam_file).sam.eval(), image, BOX)
    assert masks.shape[-2:] == ref.shape == image.shape[:2]
    assert (masks[0, 0] - ref).abs().max().item() <= 1e-4
    # ... and differs from SAM's own preprocessing of the same frame: the setting is not a no-op.
    sam_pred = i2v.build_i2v_video_predictor(sam_checkpoint=tiny_sam_file, device="cpu")
    sam_state = sam_pred.init_state([image, image])
    _, _, sam_masks = sam_pred.add_new_points_or_box(sam_state, 0, 1, box=BOX)
    assert (sam_masks - masks).abs().max().item() > 1e-2


def test_medsam_is_recorded_with_the_adapters(tiny_sam_file: Path, tmp_path: Path) -> None:
    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu", preprocess="medsam")
    save_pretrained(model, tmp_path / "adapters")
    saved = json.loads((tmp_path / "adapters" / CONFIG_NAME).read_text())
    assert saved["config"]["preprocess"] == "medsam"
    again = build_sam_i2v(checkpoint=tmp_path / "adapters", sam_checkpoint=tiny_sam_file, device="cpu")
    assert again.config.preprocess == "medsam"
    with pytest.raises(ConfigError, match=r"trained with preprocess='medsam'.*preprocess='sam'"):
        build_sam_i2v(checkpoint=tmp_path / "adapters", sam_checkpoint=tiny_sam_file, device="cpu", preprocess="sam")
    # SAM's default is left out of the file, so older releases still read such adapters.
    plain = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    save_pretrained(plain, tmp_path / "plain")
    assert "preprocess" not in json.loads((tmp_path / "plain" / CONFIG_NAME).read_text())["config"]
    with pytest.raises(CheckpointError, match=r"holds sam-i2v adapters, not a SAM.*checkpoint="):
        build_sam_i2v(sam_checkpoint=tmp_path / "plain", device="cpu")  # the two arguments swapped
    with pytest.raises(ConfigError, match="preprocess must be one of sam, medsam"):
        build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu", preprocess="ct")


def test_feature_cache_key_knows_preprocessing_and_precision(tmp_path: Path) -> None:
    sam = FeatureCache(tmp_path, "abc", image_size=1024)
    medsam = FeatureCache(tmp_path, "abc", image_size=1024, preprocess="medsam")
    half = FeatureCache(tmp_path, "abc", image_size=1024, encoder_dtype="bfloat16")
    assert len({sam.dir, medsam.dir, half.dir}) == 3
    assert sam.dir.name == "s1024-native-float16"  # SAM's own float32 keeps the key caches already have


# -- precision -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video():
    ds = SyntheticVideoDataset(
        "test", 1, config=SyntheticConfig(height=96, width=128, num_frames=4, min_objects=1, max_objects=1)
    )
    clip = ds.clip(0, range(4))
    ys, xs = np.nonzero(clip.masks[0, 0])
    return clip.frames, [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def _track(predictor, frames, box):
    state = predictor.init_state(frames)
    _, _, first = predictor.add_new_points_or_box(state, 0, 1, box=box)
    out = [first]
    out += [m for t, _, m in predictor.propagate_in_video(state) if t > 0]
    return out


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0, b > 0
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def test_bfloat16_encoder_on_cpu_agrees_with_float32(video) -> None:
    frames, box = video
    fp32 = i2v.build_i2v_video_predictor("tiny", device="cpu")
    bf16 = i2v.build_i2v_video_predictor("tiny", device="cpu", dtype=torch.bfloat16)
    assert bf16.model.sam.image_encoder.neck[0].weight.dtype == torch.bfloat16
    assert bf16.model.sam.mask_decoder.iou_token.weight.dtype == torch.float32  # the decoder stays float32
    assert not any(p.requires_grad for p in bf16.model.sam.parameters())  # still frozen
    ref, got = _track(fp32, frames, box), _track(bf16, frames, box)
    assert all(m.dtype == torch.float32 for m in got)
    ious = [_iou(a, b) for a, b in zip(ref, got)]
    assert min(ious) >= 0.9, ious
    assert any((a - b).abs().max() > 0 for a, b in zip(ref, got))  # it did run in another precision


def test_user_autocast_on_cpu_does_not_crash(video) -> None:
    frames, box = video
    predictor = i2v.build_i2v_video_predictor("tiny", device="cpu")
    ref = _track(predictor, frames, box)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _track(predictor, frames, box)
        assert torch.is_autocast_enabled("cpu")  # the caller's setting is restored
    assert all(m.dtype == torch.float32 for m in got)
    assert min(_iou(a, b) for a, b in zip(ref, got)) >= 0.9


def test_bad_dtype_is_refused() -> None:
    with pytest.raises(ConfigError, match="dtype.*int8.*bfloat16"):
        i2v.build_i2v_video_predictor("tiny", device="cpu", dtype="int8")
