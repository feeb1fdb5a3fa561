"""SamI2V: untrained upgrade == SAM, frozen means frozen, save → load is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from i2v.adapters.config import LoraConfig
from i2v.build import build_sam_i2v
from i2v.config import ModelConfig
from i2v.errors import CheckpointError
from i2v.model import CALIBRATED, ObjectPrompts, SamI2V
from i2v.pretrained import CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from i2v.sam_builder import load_sam
from i2v.tracking_ops import track_objects


def _prompts(model: SamI2V, shape, points=None, labels=None, box=None) -> ObjectPrompts:
    p = ObjectPrompts()
    if points is not None:
        coords = model.transform.apply_coords(np.asarray(points, dtype=np.float64), shape)
        p.point_coords = torch.as_tensor(coords, dtype=torch.float)[None]
        p.point_labels = torch.as_tensor(labels, dtype=torch.int)[None]
    if box is not None:
        b = model.transform.apply_boxes(np.asarray(box, dtype=np.float64)[None], shape)
        p.boxes = torch.as_tensor(b, dtype=torch.float)
    return p


def _first_frame_logits(model: SamI2V, image: np.ndarray, multimask: bool, **prompt) -> torch.Tensor:
    x, input_size = model.preprocess(image)
    frame = model.prepare_frame(model.encode_images(x))
    out = model.decode(frame, _prompts(model, image.shape[:2], **prompt), 1, multimask=multimask)
    return model.sam.postprocess_masks(out.low_res_logits, input_size, image.shape[:2])[0, 0]


def _sam_logits(sam, image, multimask: bool, points=None, labels=None, box=None) -> torch.Tensor:
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(
        point_coords=None if points is None else np.asarray(points, dtype=np.float64),
        point_labels=None if labels is None else np.asarray(labels),
        box=None if box is None else np.asarray(box, dtype=np.float64),
        multimask_output=multimask,
        return_logits=True,
    )
    return torch.as_tensor(masks[int(np.argmax(scores))])


PROMPTS = [
    dict(points=[[40.0, 50.0]], labels=[1], multimask=True),
    dict(points=[[40.0, 50.0], [100.0, 20.0]], labels=[1, 0], multimask=False),
    dict(box=[20.0, 25.0, 70.0, 80.0], multimask=False),
    dict(points=[[45.0, 48.0]], labels=[1], box=[20.0, 25.0, 70.0, 80.0], multimask=False),
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_untrained_upgrade_equals_sam_predictor(tiny_sam_file: Path, image: np.ndarray, prompt) -> None:
    prompt = dict(prompt)
    multimask = prompt.pop("multimask")
    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    ours = _first_frame_logits(model, image, multimask, **prompt)
    ref = _sam_logits(load_sam("tiny", tiny_sam_file).sam.eval(), image, multimask, **prompt)
    assert ours.shape == ref.shape == image.shape[:2]
    assert (ours - ref).abs().max().item() <= 1e-4
    assert ref.abs().max() > 0  # a vacuous comparison of zeros would prove nothing


@pytest.mark.slow
def test_untrained_upgrade_equals_sam_predictor_vit_b(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(load_sam("vit_b", seed=1).sam.state_dict(), path)
    image = (rng.random((180, 240, 3)) * 255).astype(np.uint8)
    model = build_sam_i2v("vit_b", sam_checkpoint=path, device="cpu")
    prompt = dict(points=[[60.0, 90.0]], labels=[1])
    ours = _first_frame_logits(model, image, True, **prompt)
    ref = _sam_logits(load_sam("vit_b", path).sam.eval(), image, True, **prompt)
    assert (ours - ref).abs().max().item() <= 1e-4


def _second_frame_loss(model: SamI2V, image: np.ndarray) -> torch.Tensor:
    """Run a prompted frame, then a tracked frame that reads memory and the upgrader window
    (without a prior, so memory's own prompts reach the decoder)."""
    x, _ = model.preprocess(image)
    raw = model.encode_images(x)
    f0 = model.prepare_frame(raw)
    prompts = _prompts(model, image.shape[:2], points=[[40.0, 50.0]], labels=[1])
    out0 = model.decode(f0, prompts, 1)
    memory = model.make_memory(f0, 0, out0.low_res_logits, out0.iou, out0.presence_logits, True)
    f1 = model.prepare_frame(raw.flip(-1), f0.pooled[:, None])
    out1 = track_objects(model, f1, 1, [None], [memory])
    assert bool(out1.decoded.all()), "memory should find the object on this frame"
    target = torch.zeros_like(out1.raw_logits)
    target[..., 20:60, 20:60] = 1
    return (
        torch.nn.functional.binary_cross_entropy_with_logits(out1.raw_logits, target)
        + torch.nn.functional.binary_cross_entropy_with_logits(out1.plan.readout_logits, target)
        + out1.iou.mean()
        + torch.nn.functional.softplus(out1.presence_logits).mean()
        + out0.low_res_logits.mean()
    )


def _train_step(model: SamI2V, image: np.ndarray, steps: int = 2) -> None:
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        _second_frame_loss(model, image).backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("lora", [False, True])
def test_training_step_changes_adapters_only(tiny_sam_file: Path, image: np.ndarray, lora: bool) -> None:
    cfg = ModelConfig(lora=LoraConfig(enabled=lora))
    model = build_sam_i2v(cfg, sam_checkpoint=tiny_sam_file, device="cpu")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # frozen: SAM, and the values calibration sets after training (never given to the optimiser)
    assert all((n.startswith("sam.") and "lora_" not in n) or n in CALIBRATED for n in frozen)
    assert all(not n.startswith("sam.") or "lora_" in n for n in trainable)
    assert any("lora_" in n for n in trainable) == lora
    _train_step(model, image)
    assert not model.sam.training
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen weight {n} changed"
    changed = [n for n, p in model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    for prefix in ("upgrader.", "memory_readout.", "presence_head."):
        assert any(n.startswith(prefix) for n in changed), f"no {prefix} weight changed"
    if lora:
        assert any("lora_" in n for n in changed)


@pytest.mark.slow
def test_trainable_parameters_are_within_budget_on_vit_b() -> None:
    """The issue's budget: with LoRA off, at most 5 % of SAM vit_b's parameters train."""
    model = build_sam_i2v("vit_b", device="cpu", allow_random_sam=True)
    sam_params = sum(p.numel() for p in model.sam.parameters())
    trainable = sum(p.numel() for p in model.trainable_parameters())
    assert sam_params == pytest.approx(93.7e6, rel=0.01)
    assert 0 < trainable <= 0.05 * sam_params


def test_lora_untrained_is_identity_and_targets_are_anchored(tiny_sam_file: Path, image: np.ndarray) -> None:
    cfg = ModelConfig(
        lora=LoraConfig(
            enabled=True,
            targets=[
                r"image_encoder\.blocks\.\d+\.attn\.qkv",
                r"mask_decoder\.transformer\.layers\.\d+\.self_attn\.q_proj",
            ],
        )
    )
    model = build_sam_i2v(cfg, sam_checkpoint=tiny_sam_file, device="cpu")
    assert all("patch_embed" not in n for n in model.lora_modules)
    depth = model.sam.image_encoder.blocks.__len__()
    assert len(model.lora_modules) == depth + 2
    plain = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    prompt = dict(points=[[40.0, 50.0]], labels=[1])
    a = _first_frame_logits(model, image, False, **prompt)
    b = _first_frame_logits(plain, image, False, **prompt)
    assert torch.allclose(a, b, atol=1e-5)


def test_lora_targets_matching_nothing_is_an_error(tiny_sam_file: Path) -> None:
    cfg = ModelConfig(lora=LoraConfig(enabled=True, targets=[r"proj"]))
    with pytest.raises(ValueError, match="match no linear layer"):
        build_sam_i2v(cfg, sam_checkpoint=tiny_sam_file, device="cpu")


def _tracked_logits(model: SamI2V, image: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return _second_frame_loss(model, image)


@pytest.mark.parametrize("lora", [False, True])
def test_save_then_load_gives_identical_outputs(
    tiny_sam_file: Path, image: np.ndarray, tmp_path: Path, lora: bool
) -> None:
    model = build_sam_i2v(ModelConfig(lora=LoraConfig(enabled=lora)), sam_checkpoint=tiny_sam_file, device="cpu")
    _train_step(model, image)
    out = save_pretrained(model, tmp_path / "upgrade")
    assert {p.name for p in out.iterdir()} == {WEIGHTS_NAME, CONFIG_NAME}
    meta = json.loads((out / CONFIG_NAME).read_text())
    assert meta["sam_model_type"] == "tiny" and len(meta["sam_sha256"]) == 64
    from safetensors.torch import load_file

    assert not any(k.startswith("sam.") and "lora_" not in k for k in load_file(str(out / WEIGHTS_NAME)))
    loaded = build_sam_i2v(checkpoint=out, sam_checkpoint=tiny_sam_file, device="cpu")
    assert torch.equal(_tracked_logits(model, image), _tracked_logits(loaded, image))


@pytest.mark.parametrize("lora", [False, True])
def test_freeze_then_save_then_load_round_trips(
    tiny_sam_file: Path, image: np.ndarray, tmp_path: Path, lora: bool
) -> None:
    """``requires_grad_(False)`` before inference (a common habit) changes nothing that is saved."""
    model = build_sam_i2v(ModelConfig(lora=LoraConfig(enabled=lora)), sam_checkpoint=tiny_sam_file, device="cpu")
    _train_step(model, image)
    names = set(model.adapter_parameters())
    assert any(n.startswith("memory_readout.refiner.") for n in names) and any(
        n.startswith("presence_head.") for n in names
    )
    assert any("lora_" in n for n in names) == lora
    model.requires_grad_(False)
    out = save_pretrained(model, tmp_path / "upgrade")
    from safetensors.torch import load_file

    assert set(load_file(str(out / WEIGHTS_NAME))) == names
    loaded = build_sam_i2v(checkpoint=out, sam_checkpoint=tiny_sam_file, device="cpu")
    loaded.requires_grad_(False)
    assert torch.equal(_tracked_logits(model, image), _tracked_logits(loaded, image))
    # Switched back on, the adapters train again and SAM stays frozen.
    model.set_adapters_trainable(True)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == names - set(CALIBRATED)


def test_loading_onto_another_sam_names_both_hashes(tiny_sam_file: Path, tmp_path: Path) -> None:
    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    out = save_pretrained(model, tmp_path / "upgrade")
    other = tmp_path / "other_sam.pth"
    torch.save(load_sam("tiny", seed=999).sam.state_dict(), other)
    with pytest.raises(CheckpointError) as err:
        build_sam_i2v(checkpoint=out, sam_checkpoint=other, device="cpu")
    from i2v.sam_builder import file_sha256

    assert file_sha256(tiny_sam_file) in str(err.value) and file_sha256(other) in str(err.value)


def test_corrupt_adapter_weights_are_reported(tiny_sam_file: Path, tmp_path: Path) -> None:
    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    out = save_pretrained(model, tmp_path / "upgrade")
    weights = out / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        build_sam_i2v(checkpoint=out, sam_checkpoint=tiny_sam_file, device="cpu")
    with pytest.raises(CheckpointError, match=CONFIG_NAME):
        build_sam_i2v(checkpoint=tmp_path, sam_checkpoint=tiny_sam_file, device="cpu")


def test_missing_sam_checkpoint_for_official_type_is_explained() -> None:
    with pytest.raises(CheckpointError, match="sam_checkpoint"):
        build_sam_i2v("vit_b", device="cpu")


def test_iou_token_hook_lives_for_one_decoder_call(tiny_sam_file: Path, image: np.ndarray) -> None:
    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    head = model.sam.mask_decoder.iou_prediction_head
    assert not head._forward_hooks  # building the upgrade leaves the user's SAM without hooks
    _first_frame_logits(model, image, False, points=[[40.0, 50.0]], labels=[1])
    assert not head._forward_hooks


def test_a_decoder_that_never_calls_the_iou_head_is_a_clear_error(
    tiny_sam_file: Path, image: np.ndarray, monkeypatch
) -> None:
    from i2v.errors import I2VError

    model = build_sam_i2v("tiny", sam_checkpoint=tiny_sam_file, device="cpu")
    decoder = model.sam.mask_decoder
    low = model.low_res_size

    def no_iou_head(**kwargs):  # a segment_anything whose decoder predicts IoU some other way
        n = kwargs["sparse_prompt_embeddings"].shape[0]
        return torch.zeros(n, 4, *low), torch.zeros(n, 4)

    monkeypatch.setattr(decoder, "predict_masks", no_iou_head)
    with pytest.raises(I2VError, match="MaskDecoder"):
        _first_frame_logits(model, image, False, points=[[40.0, 50.0]], labels=[1])
