"""The presence head's appearance gate and its calibration after training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from i2v.adapters.memory_prompt import GATE_OFF, PresenceHead, appearance_stats, object_appearance
from i2v.build import build_sam_i2v
from i2v.data.registry import make_dataset
from i2v.data.synthetic import SyntheticConfig
from i2v.errors import CheckpointError
from i2v.model import CALIBRATED
from i2v.pretrained import WEIGHTS_NAME, save_pretrained
from i2v.train import calibration
from i2v.train.calibration import CalibrationConfig, calibrate_presence


def _keys(m: int = 16, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=-1)


def test_appearance_of_the_remembered_region_is_one_and_of_another_region_lower() -> None:
    keys = _keys()
    mask = torch.zeros(16)
    mask[:4] = 1.0
    proto = object_appearance(keys[None], mask[None])
    other = torch.zeros(16)
    other[8:12] = 1.0
    stats = appearance_stats(keys, torch.stack([mask, other]), proto.expand(2, -1))
    assert stats[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert stats[1, 0] < 0.9
    assert stats[:, 1].tolist() == [1.0, 1.0]


def test_no_prototype_or_an_empty_mask_gives_no_evidence() -> None:
    keys = _keys()
    mask = torch.zeros(2, 16)
    mask[0, :4] = 1.0  # object 0 has a mask but no prototype; object 1 a prototype but no mask
    protos = torch.zeros(2, 8)
    protos[1] = object_appearance(keys[None], mask[0:1])
    stats = appearance_stats(keys, mask, protos)
    assert torch.equal(stats, torch.zeros(2, 2))
    assert torch.equal(appearance_stats(keys, mask, None), torch.zeros(2, 2))


def test_gate_hides_only_masks_below_the_calibrated_similarity() -> None:
    head = PresenceHead(8, bias=1.0)
    token, stats = torch.randn(3, 8), torch.zeros(3, 4)
    appearance = torch.tensor([[0.95, 1.0], [0.5, 1.0], [0.1, 0.0]])  # close; far; far but no evidence
    with torch.no_grad():
        untrained = head(token, stats, appearance)
        head.min_similarity.fill_(0.8)
        gated = head(token, stats, appearance).tolist()
    assert torch.allclose(untrained, torch.ones(3))  # gate off: the untrained head says present
    assert gated[0] == pytest.approx(1.0) and gated[2] == pytest.approx(1.0)
    assert gated[1] < -10


def test_calibrated_value_is_saved_but_never_trained(tmp_path: Path) -> None:
    model = build_sam_i2v("tiny", device="cpu")
    model.set_adapters_trainable(True)
    names = set(model.adapter_parameters())
    assert set(CALIBRATED) <= names
    trainable = {id(p) for p in model.trainable_parameters()}
    assert all(id(model.adapter_parameters()[n]) not in trainable for n in CALIBRATED)
    assert not model.presence_head.min_similarity.requires_grad
    with torch.no_grad():
        model.presence_head.min_similarity.fill_(0.7)
    out = save_pretrained(model, tmp_path / "adapter")
    loaded = build_sam_i2v(checkpoint=out, device="cpu")
    assert float(loaded.presence_head.min_similarity) == pytest.approx(0.7)


def test_adapter_saved_before_the_gate_loads_with_it_off(tmp_path: Path) -> None:
    model = build_sam_i2v("tiny", device="cpu")
    with torch.no_grad():
        model.presence_head.min_similarity.fill_(0.7)
    out = save_pretrained(model, tmp_path / "adapter")
    weights = load_file(str(out / WEIGHTS_NAME))
    del weights["presence_head.min_similarity"]
    save_file(weights, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    loaded = build_sam_i2v(checkpoint=out, device="cpu")
    assert float(loaded.presence_head.min_similarity) == GATE_OFF
    del weights["presence_head.mlp.0.bias"]  # any other missing weight is still an error
    save_file(weights, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing"):
        build_sam_i2v(checkpoint=out, device="cpu")


@pytest.mark.parametrize(
    ("scores", "min_gain", "chosen"),
    [
        ({None: 0.70, 0.6: 0.74, 0.8: 0.72}, 0.0, 0.6),
        ({None: 0.70, 0.6: 0.70, 0.8: 0.69}, 0.0, None),  # a tie keeps the gate off
        ({None: 0.70, 0.6: 0.705, 0.8: 0.69}, 0.01, None),  # below min_gain
    ],
)
def test_calibration_keeps_the_best_threshold(monkeypatch, scores, min_gain, chosen) -> None:
    model = build_sam_i2v("tiny", device="cpu")
    tried = []

    def fake_jf(m, dataset, indices, protocol):
        value = float(m.presence_head.min_similarity)
        tried.append(value)
        return scores[None if value == GATE_OFF else round(value, 3)]

    monkeypatch.setattr(calibration, "_jf", fake_jf)
    cfg = CalibrationConfig(similarities=[0.8, 0.6], min_gain=min_gain)
    record = calibrate_presence(model, make_dataset("synthetic", split="train", num_videos=1), cfg, step=5)
    assert len(tried) == 3 and tried[0] == GATE_OFF
    assert record["presence_min_similarity"] == chosen
    assert float(model.presence_head.min_similarity) == pytest.approx(GATE_OFF if chosen is None else chosen)
    assert record["step"] == 5 and model.training


def test_calibration_tracks_real_videos_and_leaves_train_mode(one_torch_thread) -> None:
    model = build_sam_i2v("tiny", device="cpu")
    videos = make_dataset("synthetic", split="train", num_videos=2, config=SyntheticConfig(num_frames=4))
    record = calibrate_presence(model, videos, CalibrationConfig(num_videos=1, similarities=[0.99]))
    jfs = {row["min_similarity"]: row["jf"] for row in record["presence_jf"]}
    assert set(jfs) == {None, 0.99} and all(0.0 <= v <= 1.0 for v in jfs.values())
    assert record["videos"] == 1 and model.training


def test_bad_calibration_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="num_videos"):
        CalibrationConfig(num_videos=0)
    with pytest.raises(ValueError, match="similarities"):
        CalibrationConfig(similarities=[1.5])
    with pytest.raises(ValueError, match="protocol"):
        CalibrationConfig(protocol="scribble")


def test_training_ends_calibrated_and_saves_the_calibrated_adapter(tmp_path: Path, one_torch_thread) -> None:
    import json

    import i2v

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: tiny\ndata:\n  - {type: synthetic, num_videos: 2, synthetic: {num_frames: 4}}\n"
        f"output_dir: {tmp_path / 'run'}\n"
    )
    cfg = i2v.load_train_config(
        recipe, ["optim.max_steps=2", "clip.num_frames=3", "calibration.similarities=[0.2,0.999]"]
    )
    result = i2v.train(cfg, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    calibrations = [r for r in records if r["type"] == "calibration"]
    assert len(calibrations) == 1 and calibrations[0]["step"] == 2 and calibrations[0]["videos"] == 2
    chosen = calibrations[0]["presence_min_similarity"]
    assert chosen in (None, 0.2, 0.999)
    assert calibration.last_calibration(tmp_path / "run" / "metrics.jsonl") == calibrations[0]
    assert calibration.describe(calibrations[0]).startswith("presence gate calibrated on 2 training videos: ")
    saved = load_file(str(result.checkpoint / WEIGHTS_NAME))["presence_head.min_similarity"]
    assert float(saved) == pytest.approx(GATE_OFF if chosen is None else chosen)


def test_presence_gate_benchmark_smoke(tmp_path: Path, one_torch_thread) -> None:
    import json

    from benchmarks import presence_gate

    out = tmp_path / "gate.json"
    presence_gate.main(["--videos", "1", "--frames", "3", "--train-videos", "1", "--output", str(out)])
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics["sweep"]) == {str(s) for s in presence_gate.CANDIDATES}
    assert metrics["calibration"]["record"]["videos"] == 1
    assert all(0.0 <= v["jf"] <= 100.0 for v in metrics["sweep"].values())


@pytest.mark.parametrize("motion", [False, True])
def test_both_policies_hide_masks_the_gate_rejects(motion: bool, one_torch_thread) -> None:
    from i2v.policies import DefaultPolicy, MotionAwarePolicy
    from i2v.video_predictor import I2VVideoPredictor

    videos = make_dataset("synthetic", split="test", num_videos=1, config=SyntheticConfig(num_frames=4))
    frames = [videos.frame(0, t) for t in range(4)]
    first = videos.masks(0, 0)[0]
    model = build_sam_i2v("tiny", device="cpu")

    def tracked_area(similarity: float) -> int:
        with torch.no_grad():
            model.presence_head.min_similarity.fill_(similarity)
        policy = MotionAwarePolicy() if motion else DefaultPolicy()
        predictor = I2VVideoPredictor(model, policy=policy, progress=False)
        state = predictor.init_state(frames)
        predictor.add_new_mask(state, 0, 1, first)
        return sum(int((m > 0).sum()) for t, _, m in predictor.propagate_in_video(state) if t > 0)

    assert tracked_area(GATE_OFF) > 0
    assert tracked_area(1.0) == 0  # no found mask is as similar as 1.0: every one is called absent


@pytest.mark.parametrize("initial_better", [False, True])
def test_calibration_keeps_whichever_weights_track_better(monkeypatch, initial_better: bool) -> None:
    model = build_sam_i2v("tiny", device="cpu")
    initial = {n: p.detach().clone() for n, p in model.adapter_parameters().items()}
    with torch.no_grad():  # "trained": the presence head's output layer has moved
        model.presence_head.mlp[-1].weight.add_(0.5)
    trained = {n: p.detach().clone() for n, p in model.adapter_parameters().items()}

    def fake_jf(m, dataset, indices, protocol):
        is_initial = bool(m.presence_head.mlp[-1].weight.abs().sum() == 0)
        return 0.8 if is_initial == initial_better else 0.7

    monkeypatch.setattr(calibration, "_jf", fake_jf)
    videos = make_dataset("synthetic", split="train", num_videos=1)
    record = calibration.calibrate(model, videos, CalibrationConfig(similarities=[0.7]), initial, step=3)
    assert record["weights"] == ("initial" if initial_better else "trained")
    assert {r["weights"] for r in record["presence_jf"]} == {"trained", "initial"} and len(record["presence_jf"]) == 4
    expect = initial if initial_better else trained
    for name, p in model.adapter_parameters().items():
        if name not in CALIBRATED:
            assert torch.equal(p.detach(), expect[name]), name
    assert "initial weights" in calibration.describe(record) if initial_better else True
