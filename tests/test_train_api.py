"""The Python training API (``i2v.train``), dataset objects, trackers, the curve, logging."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import List

import numpy as np
import pytest
from own_videos import labels_at, make_video, paint
from PIL import Image

import i2v
from i2v.cli import configure_logging
from i2v.errors import ConfigError, DatasetError

FAST = [
    "optim.max_steps=2",
    "optim.warmup_steps=1",
    "clip.num_frames=3",
    "log_every=1",
    "checkpoint_every=100",
    "calibration.num_videos=1",
]


def _recipe(tmp_path: Path, data: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"model: tiny\ndata:\n{data}\noutput_dir: {tmp_path / 'run'}\n")
    return path


def test_train_on_a_folder_dataset_returns_the_run_folder_metrics_and_curve(tmp_path: Path) -> None:
    make_video(tmp_path / "videos" / "train" / "cat", n=5, annotated=[0, 2, 4])
    make_video(tmp_path / "videos" / "val" / "dog", n=4, ext=".png")
    recipe = _recipe(tmp_path, f"  - {{type: folder, root: {tmp_path / 'videos'}}}")
    config = i2v.load_train_config(recipe, FAST + ["val.every=2", "val.num_videos=1", "trackers=[]"])
    assert isinstance(config, i2v.TrainConfig) and config.data[0].type == "folder"
    result = i2v.train(config, progress=False)
    assert result.output_dir == tmp_path / "run" and result.step == 2
    assert np.isfinite(result.metrics["loss"]) and result.metrics["step"] == 2
    assert 0.0 <= result.metrics["val_jf"] <= 1.0  # validated on videos/val
    assert result.curve == tmp_path / "run" / "training_curve.png"
    with Image.open(result.curve) as im:
        assert im.format == "PNG" and im.width > 100
    assert not (tmp_path / "run" / "tensorboard").exists()  # trackers=[]
    predictor = i2v.build_i2v_video_predictor(checkpoint=result.output_dir, device="cpu")  # the run folder
    assert predictor is not None


class MyVideos:
    """A dataset object that only follows the protocol (no base class)."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self.calls: List[str] = []

    def __len__(self) -> int:
        return self.n

    def video_name(self, i: int) -> str:
        return f"video{i}"

    def num_frames(self, i: int) -> int:
        return 4

    def obj_ids(self, i: int) -> List[int]:
        return [1, 2]

    def frame(self, i: int, t: int) -> np.ndarray:
        self.calls.append(f"{i}/{t}")
        return paint(labels_at(t))

    def masks(self, i: int, t: int) -> np.ndarray:
        lab = labels_at(t)
        return np.stack([lab == 1, lab == 2])


def test_train_on_ones_own_dataset_object(tmp_path: Path) -> None:
    config = i2v.load_train_config(_recipe(tmp_path, "  - {type: synthetic}"), FAST + ["trackers=[]"])
    videos = MyVideos()
    result = i2v.train(config, videos, progress=False)
    assert result.step == 2 and np.isfinite(result.metrics["loss"])
    assert any(c.startswith(("0/", "1/")) for c in videos.calls[1:])  # clips came from it, not from cfg.data


class NoMasks(MyVideos):
    masks = None  # type: ignore[assignment]


class FloatFrames(MyVideos):
    def frame(self, i: int, t: int) -> np.ndarray:
        return super().frame(i, t) / 255.0


class WrongCount(MyVideos):
    def obj_ids(self, i: int) -> List[int]:
        return [1]


@pytest.mark.parametrize(
    "videos, message",
    [
        (NoMasks(), r"\(NoMasks\) lacks masks\. A dataset object needs __len__, video_name"),
        (
            FloatFrames(),
            r"returns a float64 array of shape \(40, 56, 3\) from frame\(0, 0\); expected an \(H, W, 3\) uint8",
        ),
        (WrongCount(), r"masks\(0, 0\) of shape \(2, 40, 56\) for a frame of \(40, 56\) and 1 object\(s\)"),
        (MyVideos(0), r"holds no video"),
    ],
)
def test_a_dataset_object_that_breaks_the_protocol_is_refused_before_training(tmp_path: Path, videos, message) -> None:
    config = i2v.load_train_config(_recipe(tmp_path, "  - {type: synthetic}"), FAST)
    with pytest.raises(DatasetError, match=message):
        i2v.train(config, videos, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_tracker_that_is_not_installed_is_an_error_before_training(tmp_path: Path) -> None:
    from accelerate.tracking import get_available_trackers

    installed = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    missing = next(t for t in ("wandb", "mlflow", "comet_ml", "aim") if t not in installed)
    config = i2v.load_train_config(_recipe(tmp_path, "  - {type: synthetic}"), FAST + [f"trackers=[{missing}]"])
    with pytest.raises(ConfigError, match=f"trackers \\['{missing}'\\] are not installed.*pip install {missing}"):
        i2v.train(config, progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="trackers: unknown \\['tensorbord'\\]"):
        i2v.load_train_config(_recipe(tmp_path, "  - {type: synthetic}"), ["trackers=[tensorbord]"])


def test_the_configured_tracker_is_used(tmp_path: Path) -> None:
    config = i2v.load_train_config(
        _recipe(tmp_path, "  - {type: synthetic}"),
        FAST + ["optim.max_steps=1", "trackers=[tensorboard]", "tracker_project=mine"],
    )
    i2v.train(config, progress=False)
    assert list((tmp_path / "run" / "mine").glob("events.out.tfevents.*"))


def test_cli_verbosity_flags_set_the_library_log_level() -> None:
    from i2v.cli import build_parser

    parser = build_parser()
    for argv, level in (
        (["train", "--config", "x"], logging.INFO),
        (["-v", "train", "--config", "x"], logging.DEBUG),
        (["train", "-q", "--config", "x"], logging.WARNING),
        (["-qq", "train", "--config", "x"], logging.ERROR),
    ):
        args = parser.parse_args(argv)
        assert configure_logging(args.verbose, args.quiet) == level
        assert logging.getLogger("i2v.train.trainer").getEffectiveLevel() == level
    configure_logging()


def test_library_code_logs_instead_of_printing() -> None:
    """Only the command-line modules print (their output is the command's result)."""
    root = Path(i2v.__file__).parent
    cli_modules = {"cli.py", "segment_cli.py", "quickstart.py"}
    printing = []
    for path in sorted(root.rglob("*.py")):
        if path.name in cli_modules:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not printing, f"print() in library code: {printing}"


def test_i2v_train_is_callable_and_still_the_training_package() -> None:
    import i2v.train.feature_cache as feature_cache  # module paths under i2v.train keep working

    assert callable(i2v.train) and i2v.train.trainer.Trainer is not None
    assert feature_cache.__name__ == "i2v.train.feature_cache"
    with pytest.raises(ConfigError, match="i2v.train needs a TrainConfig or a recipe path, got int"):
        i2v.train(3)
