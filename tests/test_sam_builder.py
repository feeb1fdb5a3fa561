"""Base SAM: architectures, safe checkpoint loading, and errors that say what was found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from i2v.errors import CheckpointError
from i2v.sam_builder import SAM_ARCHS, file_sha256, infer_model_type, load_sam


def test_tiny_fits_its_budget() -> None:
    sam = load_sam("tiny").sam
    assert sum(p.numel() for p in sam.parameters()) <= 10_000_000
    assert sam.image_encoder.img_size <= 512


def test_load_records_hash_and_weights(tiny_sam_file: Path) -> None:
    loaded = load_sam("tiny", tiny_sam_file)
    assert loaded.sha256 == file_sha256(tiny_sam_file)
    expected = torch.load(tiny_sam_file, weights_only=True)
    for k, v in loaded.sam.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_wrapped_state_dict_is_accepted(tiny_sam_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"model": torch.load(tiny_sam_file, weights_only=True), "epoch": 3}, path)
    assert load_sam("tiny", path).model_type == "tiny"


def test_wrong_model_type_names_file_and_types(tmp_path: Path) -> None:
    # Only the tensors that identify the architecture: a vit_l-shaped patch embedding, 24 blocks.
    fake = {
        "image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 1, 1),
        "image_encoder.blocks.23.norm1.weight": torch.zeros(1),
    }
    path = tmp_path / "sam_vit_l_fake.pth"
    torch.save(fake, path)
    assert infer_model_type(fake)[0] == "vit_l"
    with pytest.raises(CheckpointError) as err:
        load_sam("vit_b", path)
    msg = str(err.value)
    assert "sam_vit_l_fake.pth" in msg and "vit_l" in msg and "vit_b" in msg


def test_truncated_file_is_reported(tiny_sam_file: Path, tmp_path: Path) -> None:
    data = tiny_sam_file.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_sam("tiny", path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_sam("tiny", path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_sam("tiny", tmp_path / "missing.pth")


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # runs os.system on an unsafe torch.load
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_sam("tiny", path)
    assert not marker.exists()


def test_missing_keys_are_reported(tiny_sam_file: Path, tmp_path: Path) -> None:
    sd = torch.load(tiny_sam_file, weights_only=True)
    del sd["mask_decoder.iou_token.weight"]
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="iou_token"):
        load_sam("tiny", path)


def test_unknown_type() -> None:
    with pytest.raises(CheckpointError, match="vit_b"):
        load_sam("vit_x")


@pytest.mark.slow
def test_random_vit_b_saved_as_sam_saves_it_loads(tmp_path: Path) -> None:
    sd = load_sam("vit_b", seed=0).sam.state_dict()
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(sd, path)
    loaded = load_sam("vit_b", path)
    assert loaded.model_type == "vit_b"
    assert sum(p.numel() for p in loaded.sam.parameters()) == pytest.approx(93.7e6, rel=0.01)
    assert torch.equal(loaded.sam.state_dict()["image_encoder.pos_embed"], sd["image_encoder.pos_embed"])
    assert set(SAM_ARCHS) >= {"vit_b", "vit_l", "vit_h", "tiny"}
