"""The training loop on the tiny recipe, made tinier: 2 synthetic videos of 4 frames at 64x80,
4-frame clips of one object, mask prompts (no clicks to decode on frame 0), a few steps.

Properties: training lowers the loss; only adapter weights change; unknown recipe keys are
refused with the nearest valid key; a SIGKILLed run leaves only complete checkpoints and
``--resume`` finishes it exactly as an uninterrupted run; two DDP processes hold identical
adapters after every step; non-finite losses skip steps and stop the run after a limit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from i2v.errors import ConfigError
from i2v.train import checkpointing as ckpt
from i2v.train import trainer as trainer_module
from i2v.train.clip_step import ClipLossOutput, prepare_clip
from i2v.train.config import load_train_config
from i2v.train.trainer import NonFiniteLossError, Trainer

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "train_tiny_synthetic.yaml"
MAX_STEPS = 8


def tiny_overrides(out: Path, sam_file: Path, *extra: str) -> List[str]:
    return [
        f"sam_checkpoint={sam_file}",
        f"output_dir={out}",
        "data.0.num_videos=2",
        "data.0.synthetic.height=64",
        "data.0.synthetic.width=80",
        "data.0.synthetic.num_frames=4",
        "data.0.synthetic.max_objects=1",
        "clip.num_frames=4",
        "clip.stride=[1,1]",
        "clip.max_objects=1",
        "prompts.point_prob=0.0",
        "prompts.box_prob=0.0",
        "prompts.mask_prob=1.0",
        "prompts.second_cond_prob=0.0",
        "prompts.correction_prob=0.0",
        "optim.batch_size=1",
        "optim.warmup_steps=0",
        "optim.lr=3e-3",
        f"optim.max_steps={MAX_STEPS}",
        "val.every=0",
        "log_every=1",
        "checkpoint_every=2",
        "feature_cache.dtype=float32",
        *extra,
    ]


def read_metrics(out: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def fixed_clip_loss(tr: Trainer) -> float:
    """Loss of the first training clip under a fixed simulated user (no gradient)."""
    clip = tr.dataset[0]
    prepared = prepare_clip(tr.model, clip.frames, clip.masks)
    with torch.no_grad():
        emb = tr.model.encode_images(prepared.images)
        return float(tr.objective(emb, prepared.gt, clip.annotated, np.random.default_rng(0)).total)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory, tiny_sam_file: Path) -> Dict[str, Any]:
    """An uninterrupted in-process run of MAX_STEPS steps, with what it changed (and the torch
    thread count it ran with: a run with another count sums in another order)."""
    out = tmp_path_factory.mktemp("straight")
    threads = torch.get_num_threads()
    cfg = load_train_config(RECIPE, tiny_overrides(out, tiny_sam_file))
    tr = Trainer(cfg, progress=False)
    sam_before = {k: v.clone() for k, v in tr.model.sam.state_dict().items()}
    adapters_before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    loss_before = fixed_clip_loss(tr)
    result = tr.run()
    return {
        "out": out,
        "result": result,
        "trainer": tr,
        "sam_before": sam_before,
        "adapters_before": adapters_before,
        "loss_before": loss_before,
        "loss_after": fixed_clip_loss(tr),
        "threads": threads,
    }


@pytest.mark.slow
def test_training_lowers_the_loss_and_changes_only_adapters(straight_run: Dict[str, Any]) -> None:
    tr, out = straight_run["trainer"], straight_run["out"]
    assert straight_run["result"].step == MAX_STEPS
    assert straight_run["loss_after"] < straight_run["loss_before"] - 0.1
    for name, value in tr.model.sam.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(value, straight_run["sam_before"][name]), f"frozen SAM weight {name} changed"
    changed = [
        n
        for n, p in tr.model.named_parameters()
        if p.requires_grad and not torch.equal(p.detach(), straight_run["adapters_before"][n])
    ]
    assert len(changed) > len(straight_run["adapters_before"]) // 2
    steps = [r["step"] for r in read_metrics(out) if r["type"] == "train"]
    assert steps == list(range(1, MAX_STEPS + 1))
    assert (out / "tensorboard").is_dir() and (out / "train_config.yaml").is_file()
    # checkpoints are loadable upgrades, and keep_last prunes the older ones
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-0000006", "checkpoint-0000008"]
    assert (out / "latest").read_text().strip() == "checkpoint-0000008"


def test_validation_curve_starts_at_the_untrained_adapters(tmp_path: Path, tiny_sam_file: Path) -> None:
    overrides = tiny_overrides(tmp_path, tiny_sam_file, "optim.max_steps=2", "val.every=2", "val.num_videos=1")
    tr = Trainer(load_train_config(RECIPE, overrides), progress=False)
    untrained = tr.validate()
    tr.run()
    val = [r for r in read_metrics(tmp_path) if r["type"] == "val"]
    assert [r["step"] for r in val] == [0, 2]
    assert val[0]["jf"] == pytest.approx(untrained["jf"], abs=1e-12)


def test_unknown_keys_are_rejected_with_the_nearest_valid_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'lrr'.*'lr'"):
        load_train_config(RECIPE, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"unknown key 'num_frame'.*'num_frames'"):
        load_train_config(RECIPE, ["clip.num_frame=4"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.read_text() + "checkpoint_evry: 5\n")
    with pytest.raises(ConfigError, match=r"'checkpoint_every'"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match=r"unknown key 'dimm'.*'dim'"):
        load_train_config(RECIPE, ["model.upgrader.dimm=3"])
    cfg = load_train_config(RECIPE, ["model.upgrader.dim=32", "optim.lr=3e-4"])
    assert cfg.model.upgrader.dim == 32 and cfg.model.sam == "tiny" and cfg.optim.lr == pytest.approx(3e-4)


def test_lora_on_the_image_encoder_refuses_the_feature_cache() -> None:
    lora = ["model.lora.enabled=true", r"model.lora.targets=['image_encoder\.blocks\.\d+\.attn\.qkv']"]
    with pytest.raises(ConfigError, match="LoRA on the image encoder"):
        load_train_config(RECIPE, lora)
    cfg = load_train_config(RECIPE, lora + ["feature_cache.enabled=false"])
    assert cfg.model.lora.enabled
    load_train_config(RECIPE, ["model.lora.enabled=true", "feature_cache.enabled=true"])  # decoder LoRA: fine


def _adapters(checkpoint: Path) -> Dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "adapter_model.safetensors"))


@pytest.mark.slow
def test_resume_after_sigkill_continues_exactly(
    tmp_path: Path, tiny_sam_file: Path, straight_run: Dict[str, Any]
) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "i2v.cli",
        "train",
        "--config",
        str(RECIPE),
        "--no-progress",
        *tiny_overrides(out, tiny_sam_file),
    ]
    # the same thread count as the in-process run it is compared with
    env = {**os.environ, "OMP_NUM_THREADS": str(straight_run["threads"])}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while not (out / "latest").is_file():
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    checkpoints = ckpt.list_checkpoints(out)
    assert checkpoints, "the first checkpoint should have survived the kill"
    for c in checkpoints:  # nothing half-written under a checkpoint-* name
        assert ckpt.is_complete(c)
        assert {p.name for p in c.iterdir()} == {
            "adapter_model.safetensors",
            "adapter_config.json",
            "training_state.pt",
            "checkpoint.json",
        }
    resumed_from = int(ckpt.latest_checkpoint(out).name.split("-")[1])
    assert resumed_from < MAX_STEPS

    done = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"at step {resumed_from}" in done.stdout + done.stderr
    steps = [r["step"] for r in read_metrics(out) if r["type"] == "train"]
    assert steps == list(range(1, MAX_STEPS + 1))  # lines past the checkpoint were redone, not doubled
    final = out / ckpt.checkpoint_name(MAX_STEPS)
    assert ckpt.is_complete(final)
    state = ckpt.load_training_state(final)
    assert state["step"] == MAX_STEPS and state["scheduler"]["last_epoch"] == MAX_STEPS
    # same data order, schedule and optimizer state: the same weights as the uninterrupted run
    expected = _adapters(straight_run["out"] / ckpt.checkpoint_name(MAX_STEPS))
    got = _adapters(final)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_process_ddp_run_keeps_adapters_identical(tmp_path: Path, tiny_sam_file: Path) -> None:
    # ``accelerate launch --cpu`` starts one process unless MPI is set up; the torchrun launcher
    # (``--multi_gpu``) with no visible GPU gives two gloo CPU processes.
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "i2v.cli",
        "train",
        "--config",
        str(RECIPE),
        "--no-progress",
        *tiny_overrides(out, tiny_sam_file, "optim.max_steps=2", "dump_weight_hashes=true"),
    ]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [json.loads((out / "weight_hashes" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and set(ranks[0]) == {"1", "2"}
    assert ranks[0]["1"] != ranks[0]["2"]
    assert ckpt.is_complete(out / ckpt.checkpoint_name(2))


@pytest.mark.slow
def test_nonfinite_losses_skip_steps_then_stop(
    tmp_path: Path, tiny_sam_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = trainer_module.clip_loss
    calls = {"n": 0}
    nan_calls = {3, 5, 6}  # one clip per step: steps 3, 5 and 6 are non-finite

    def flaky_clip_loss(model: Any, *args: Any, **kwargs: Any) -> ClipLossOutput:
        calls["n"] += 1
        if calls["n"] not in nan_calls:
            return real(model, *args, **kwargs)
        total = sum(p.sum() for p in model.trainable_parameters()) * float("nan")
        return ClipLossOutput(total, {"total": float("nan")}, torch.zeros(0), torch.zeros(0), [0], [], [], 0)

    monkeypatch.setattr(trainer_module, "clip_loss", flaky_clip_loss)
    out = tmp_path / "nan"
    cfg = load_train_config(
        RECIPE,
        tiny_overrides(out, tiny_sam_file, "optim.max_steps=10", "max_nonfinite_in_row=2", "dump_weight_hashes=true"),
    )
    tr = Trainer(cfg, progress=False)
    with pytest.raises(NonFiniteLossError, match="2 steps in a row.*checkpoint-0000004"):
        tr.run()
    hashes = json.loads((out / "weight_hashes" / "rank0.json").read_text())
    assert hashes["3"] == hashes["2"] and hashes["4"] != hashes["3"]  # a skipped step changes nothing
    assert hashes["6"] == hashes["5"] == hashes["4"]
    rows = {r["step"]: r for r in read_metrics(out)}
    assert rows[3]["skipped"] and not rows[4]["skipped"] and rows[6]["nonfinite"] == 3
    assert ckpt.latest_checkpoint(out) == out / "checkpoint-0000004"  # the last good one, intact
    assert ckpt.load_training_state(out / "checkpoint-0000004")["nonfinite_in_row"] == 0
