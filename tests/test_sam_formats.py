"""Every SAM checkpoint format a user holds upgrades with no conversion step, and the untrained
upgrade of each equals that format's own image predictor on the first prompted frame."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from i2v.build import build_i2v_video_predictor, build_sam_i2v
from i2v.errors import CheckpointError
from i2v.sam_builder import file_sha256, load_sam
from i2v.sam_formats import HQ_PREFIXES, files_sha256, read_sam_weights

POINTS = np.array([[40.0, 50.0], [100.0, 20.0]])
LABELS = np.array([1, 0])


def _first_frame(predictor, image: np.ndarray, **prompt) -> torch.Tensor:
    """(H, W) logits of object 1 on a prompted first frame, through the video predictor."""
    state = predictor.init_state([image, image])
    _, _, masks = predictor.add_new_points_or_box(state, 0, 1, **prompt)
    return masks[0, 0]


def _same_weights(sam: torch.nn.Module, expected: Dict[str, torch.Tensor]) -> None:
    got = sam.state_dict()
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


# -- Hugging Face transformers SamModel ------------------------------------------------------


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """transformers initialises SAM's vision encoder to ~1e-10: give every tensor real values,
    so that a comparison of outputs cannot pass on zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            is_norm = "norm" in name and p.ndim == 1 and name.endswith("weight")
            p.copy_(1.0 + 0.1 * noise if is_norm else noise * (1.0 if "positional" in name else 0.1))


def _hf_tiny_sam(seed: int = 0):
    """A transformers SamModel with the shape of sam-i2v's ``tiny`` SAM."""
    import transformers  # a dev dependency (the reference implementation)

    vision = transformers.SamVisionConfig(
        hidden_size=128,
        output_channels=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=128,
        patch_size=8,
        window_size=8,
        global_attn_indexes=[1, 3],
        num_pos_feats=64,
        mlp_dim=512,
    )
    prompt = transformers.SamPromptEncoderConfig(hidden_size=128, image_size=128, patch_size=8)
    decoder = transformers.SamMaskDecoderConfig(
        hidden_size=128, mlp_dim=512, num_attention_heads=4, iou_head_hidden_dim=128
    )
    torch.manual_seed(seed)
    model = transformers.SamModel(
        transformers.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    ).eval()
    _randomise(model, seed)
    return model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory):
    model = _hf_tiny_sam()
    folder = tmp_path_factory.mktemp("hf") / "sam-finetuned"
    model.save_pretrained(folder)
    return model, folder


def _hf_logits(hf, model, image: np.ndarray, **prompt) -> torch.Tensor:
    """transformers' own SamModel output for the prompt, brought to the frame like SAM does."""
    x, input_size = model.preprocess(image)
    kwargs = {}
    if "points" in prompt:
        coords = model.transform.apply_coords(prompt["points"].copy(), image.shape[:2])
        kwargs["input_points"] = torch.as_tensor(coords, dtype=torch.float)[None, None]
        kwargs["input_labels"] = torch.as_tensor(prompt["labels"])[None, None]
    if "box" in prompt:
        box = model.transform.apply_boxes(np.asarray(prompt["box"], dtype=float)[None], image.shape[:2])
        kwargs["input_boxes"] = torch.as_tensor(box, dtype=torch.float)[None]
    with torch.no_grad():
        out = hf(pixel_values=x, multimask_output=False, **kwargs)
    low = out.pred_masks[0, :, 0][:, None]  # (1, 1, 4h, 4w)
    return model.sam.postprocess_masks(low, input_size, image.shape[:2])[0, 0]


@pytest.mark.parametrize("prompt", [dict(points=POINTS, labels=LABELS), dict(box=[20.0, 25.0, 70.0, 80.0])])
def test_hf_sam_folder_equals_transformers(hf_folder, image: np.ndarray, prompt) -> None:
    hf, folder = hf_folder
    predictor = build_i2v_video_predictor(sam_checkpoint=folder, device="cpu")  # no config: inferred
    assert predictor.model.config.sam == "tiny"
    ours = _first_frame(predictor, image, **prompt)
    ref = _hf_logits(hf, predictor.model, image, **prompt)
    assert ours.shape == ref.shape == image.shape[:2]
    assert ref.abs().max() > 0.25  # not a vacuous comparison of near-zeros
    assert (ours - ref).abs().max().item() <= 1e-4


def test_inferred_type_is_reported(hf_folder, caplog: pytest.LogCaptureFixture) -> None:
    _, folder = hf_folder
    with caplog.at_level("INFO", logger="i2v"):
        build_sam_i2v(sam_checkpoint=folder, device="cpu")
    assert "Hugging Face SamModel folder, a tiny SAM (embed dim 128, 4 blocks)" in caplog.text
    assert "using the bundled tiny config" in caplog.text


def test_hf_weights_file_alone_and_its_hash(hf_folder) -> None:
    _, folder = hf_folder
    weights = folder / "model.safetensors"
    from_file, from_folder = load_sam(None, weights), load_sam("tiny", folder)
    assert from_file.format == "Hugging Face SamModel weights"
    assert from_folder.format == "Hugging Face SamModel folder"
    assert from_file.sha256 == from_folder.sha256 == file_sha256(weights)
    _same_weights(from_file.sam, from_folder.sam.state_dict())


def test_hf_sharded_and_bin_folders(hf_folder, tmp_path: Path) -> None:
    hf, folder = hf_folder
    reference = load_sam(None, folder).sam.state_dict()
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="200KB")
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1
    loaded = load_sam(None, sharded)
    _same_weights(loaded.sam, reference)
    assert loaded.sha256 == files_sha256(shards) != file_sha256(shards[0])
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "config.json").write_text((folder / "config.json").read_text())
    torch.save(hf.state_dict(), binary / "pytorch_model.bin")
    _same_weights(load_sam(None, binary).sam, reference)


def test_peft_lora_folder_equals_peft_merge(hf_folder, image: np.ndarray, tmp_path: Path) -> None:
    import peft
    import transformers

    _, folder = hf_folder
    base = transformers.SamModel.from_pretrained(folder).eval()  # records the folder as its base
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "q_proj", "v_proj"]))
    with torch.no_grad():  # peft starts B at zero (a no-op adapter): make it change the model
        g = torch.Generator().manual_seed(2)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    lora.save_pretrained(tmp_path / "lora")
    merged = lora.merge_and_unload().eval()
    predictor = build_i2v_video_predictor(sam_checkpoint=tmp_path / "lora", device="cpu")
    ours = _first_frame(predictor, image, points=POINTS, labels=LABELS)
    ref = _hf_logits(merged, predictor.model, image, points=POINTS, labels=LABELS)
    unmerged = _hf_logits(
        transformers.SamModel.from_pretrained(folder).eval(), predictor.model, image, points=POINTS, labels=LABELS
    )
    assert (ref - unmerged).abs().max() > 1e-2  # the LoRA changes the output
    assert (ours - ref).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_hf_vit_b_sized_sam_loads_strictly(tmp_path: Path) -> None:
    import transformers

    with torch.device("meta"):  # names and shapes only: the map is what is tested here
        hf = transformers.SamModel(transformers.SamConfig())
    state = {k: torch.zeros(v.shape) for k, v in hf.state_dict().items()}
    state["vision_encoder.pos_embed"] = torch.randn(state["vision_encoder.pos_embed"].shape)
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "model.safetensors"))
    loaded = load_sam(None, tmp_path / "model.safetensors")
    assert loaded.model_type == "vit_b"
    assert torch.equal(loaded.sam.image_encoder.pos_embed, state["vision_encoder.pos_embed"])


# -- wrapped state dicts and SAM-HQ ----------------------------------------------------------


def test_lightning_and_ddp_wrappers(tiny_sam_file: Path, tmp_path: Path) -> None:
    sd = torch.load(tiny_sam_file, weights_only=True)
    lightning = {
        "epoch": 3,
        "global_step": 10,
        "state_dict": {**{f"model.{k}": v for k, v in sd.items()}, "criterion.pos_weight": torch.ones(1)},
    }
    ddp = {f"module.{k}": v for k, v in sd.items()}
    for name, obj in (("lightning.ckpt", lightning), ("ddp.pth", ddp), ("nested.pth", {"model": ddp})):
        torch.save(obj, tmp_path / name)
        loaded = load_sam(None, tmp_path / name)
        assert loaded.model_type == "tiny" and loaded.sha256 == file_sha256(tmp_path / name)
        assert any("prefix" in n for n in loaded.notes), name
        _same_weights(loaded.sam, sd)


def test_sam_hq_drops_its_extra_tensors_with_a_warning(tiny_sam_file: Path, image: np.ndarray, tmp_path: Path) -> None:
    sd = torch.load(tiny_sam_file, weights_only=True)
    hq = dict(sd)
    for prefix in HQ_PREFIXES:
        hq[prefix + "weight"] = torch.randn(8, 8)
    hq["mask_decoder.hf_mlp.layers.0.bias"] = torch.randn(8)
    path = tmp_path / "sam_hq_tiny.pth"
    torch.save(hq, path)
    with pytest.warns(UserWarning, match="SAM-HQ"):
        model = build_sam_i2v(sam_checkpoint=path, device="cpu")
    _same_weights(model.sam, sd)
    plain = build_sam_i2v(sam_checkpoint=tiny_sam_file, device="cpu")
    from i2v.video_predictor import I2VVideoPredictor

    a = _first_frame(I2VVideoPredictor(model), image, points=POINTS, labels=LABELS)
    b = _first_frame(I2VVideoPredictor(plain), image, points=POINTS, labels=LABELS)
    assert torch.equal(a, b)
    assert model.sam_sha256 == file_sha256(path) != plain.sam_sha256


# -- MobileSAM / TinySAM (vit_t) -------------------------------------------------------------


@pytest.mark.slow
def test_mobile_sam_equals_its_own_predictor(tmp_path: Path, image: np.ndarray) -> None:
    import mobile_sam  # MobileSAM's own code (mobilesam-mirror), a dev dependency

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        ref = mobile_sam.sam_model_registry["vit_t"]()
    _randomise(ref, 1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # batch-norm statistics away from their identity init
        for k, v in ref.image_encoder.named_buffers():
            if k.endswith(("running_mean", "running_var")):
                v.add_(0.5 * torch.rand(v.shape, generator=g))
    path = tmp_path / "mobile_sam.pt"
    torch.save(ref.state_dict(), path)
    predictor = build_i2v_video_predictor(sam_checkpoint=path, device="cpu")
    assert predictor.model.config.sam == "vit_t"
    ours = _first_frame(predictor, image, points=POINTS, labels=LABELS)
    sam_predictor = mobile_sam.SamPredictor(ref.eval())
    sam_predictor.set_image(image)
    masks, _, _ = sam_predictor.predict(
        point_coords=POINTS, point_labels=LABELS, multimask_output=False, return_logits=True
    )
    theirs = torch.as_tensor(masks[0])
    assert theirs.abs().max() > 0.25  # not a vacuous comparison of near-zeros
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_unknown_tinyvit_variant_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tinyvit_21m.pth"
    torch.save(
        {
            "image_encoder.layers.0.blocks.0.conv1.c.weight": torch.zeros(1),
            "image_encoder.layers.3.blocks.0.attn.norm.weight": torch.zeros(576),
        },
        path,
    )
    with pytest.raises(CheckpointError, match=r"tinyvit_21m.pth.*TinyViT variant.*576"):
        load_sam(None, path)


# -- refusals ---------------------------------------------------------------------------------


def test_explicit_config_that_disagrees_names_both(hf_folder) -> None:
    _, folder = hf_folder
    with pytest.raises(CheckpointError, match=r"tiny SAM.*expects a vit_b SAM"):
        build_sam_i2v("vit_b", sam_checkpoint=folder, device="cpu")


def test_peft_adapter_folder_without_its_base_says_how_to_merge(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": "facebook/sam-vit-base"})
    )
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"peft LoRA.*'facebook/sam-vit-base' is not a folder.*merge_and_unload"):
        load_sam(None, tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(CheckpointError, match=r"type 'IA3'.*only LoRA"):
        load_sam(None, tmp_path)


def test_unrecognised_folder_lists_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "a.pth").write_bytes(b"")
    (tmp_path / "b.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"not a recognised layout.*found a.pth, b.pth"):
        load_sam(None, tmp_path)


def test_hf_with_lora_or_foreign_tensors_is_refused(hf_folder, tmp_path: Path) -> None:
    _, folder = hf_folder
    sd = read_sam_weights(folder / "model.safetensors")  # renamed: fine
    assert "image_encoder.patch_embed.proj.weight" in sd.state_dict
    from safetensors.torch import load_file, save_file

    raw = load_file(str(folder / "model.safetensors"))
    raw["vision_encoder.layers.0.attn.q_proj.lora_A.weight"] = torch.zeros(4, 128)
    save_file(raw, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model.safetensors.*unmerged LoRA.*lora_A.*merge_and_unload"):
        load_sam(None, tmp_path / "model.safetensors")
    del raw["vision_encoder.layers.0.attn.q_proj.lora_A.weight"]
    raw["vision_encoder.extra_head.weight"] = torch.zeros(4)
    save_file(raw, str(tmp_path / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"model.safetensors.*Hugging Face SamModel.*not part of SAM: vision_encoder.extra_head"
    ):
        load_sam(None, tmp_path / "model.safetensors")


def test_dict_without_sam_names_what_it_found(tmp_path: Path) -> None:
    path = tmp_path / "optimizer.pth"
    torch.save({"step": torch.tensor(3), "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match=r"optimizer.pth.*expected a state dict of tensors.*keys step, lr"):
        load_sam(None, path)
    with pytest.raises(CheckpointError, match="no SAM model type"):
        load_sam(None)
