"""Every command line that cannot work ends in one line on stderr, before any work, with a
non-zero exit code and no traceback; Ctrl-C in training saves and says how to resume (issue 18)."""

from __future__ import annotations

import errno
import signal
from pathlib import Path
from typing import Any, List

import pytest
import torch
from safetensors.torch import load_file

from i2v.cli import main
from i2v.train import cli as train_cli
from i2v.train.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
RECIPE = str(REPO / "configs" / "train_tiny_synthetic.yaml")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line_error(capsys: pytest.CaptureFixture, message: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["quickstart", "--device", "gpu"], "device 'gpu' is not a PyTorch device"),
        (["quickstart", "--val-videos", "0"], "--val-videos must be at least 1, got 0"),
        (["quickstart", "--frames", "1"], "--frames must be at least 3, got 1"),
        (["quickstart", "--frames", "2"], "--frames must be at least 3, got 2"),
        (["quickstart", "--steps", "0"], "--steps must be at least 1"),
        (["eval", "--dataset", "synthetic", "--max-videos", "0"], "--max-videos must be at least 1, got 0"),
        (["eval", "--dataset", "synthetic", "--max-videos", "-1"], "--max-videos must be at least 1, got -1"),
        (["segment", "VIDEO", "--obj-id", "1", "--point", "5,5", "--fps", "0"], "--fps must be a positive frame rate"),
    ],
)
def test_arguments_that_cannot_work_are_refused_before_any_work(
    argv: List[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    argv = [a.replace("VIDEO", str(tmp_path / "video.mp4")) for a in argv] + ["--out", str(out)]
    assert main(argv) == 2
    _one_line_error(capsys, message)
    assert not out.exists()  # nothing was started


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["quickstart", "--device", "cuda", "--out", str(tmp_path / "q")]) == 2
    _one_line_error(capsys, "PyTorch sees no CUDA GPU on this machine; pass cpu")
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("option", ["--out", "--save-masks"])
def test_an_output_folder_that_is_a_file_is_refused(option: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "results.txt"
    file.write_text("the user's file")
    assert main(["eval", "--dataset", "synthetic", option, str(file)]) == 2
    _one_line_error(capsys, f"{option} '{file}' is a file; pass a folder")
    assert file.read_text() == "the user's file"
    assert main(["eval", "--dataset", "synthetic", option, str(file / "sub")]) == 2
    _one_line_error(capsys, f"lies under the file '{file}'")


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=[1,2", "not a YAML scalar or list"),
        ("optim.lr=!!python/object/apply:os.system [echo]", "could not determine a constructor"),
        ("optim.lr=.nan", "expected a finite number"),
    ],
)
def test_bad_recipe_overrides_are_one_line_errors(
    override: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", "--config", RECIPE, override, f"output_dir={tmp_path / 'run'}"]) == 2
    _one_line_error(capsys, message)


def test_a_binary_config_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "model.pth"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["train", "--config", str(binary)]) == 2
    _one_line_error(capsys, "is not text (a binary file?)")


def test_a_full_disk_is_one_line_that_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def disk_full(args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoint-0000004/training_state.pt")

    monkeypatch.setattr(train_cli, "run_train", disk_full)
    assert main(["train", "--config", RECIPE]) == 1
    _one_line_error(capsys, "out of disk space (runs/x/checkpoint-0000004/training_state.pt)")


# ---------------------------------------------------------------- Ctrl-C in training


def _train_argv(out: Path, sam_file: Path, *flags: str) -> List[str]:
    return [
        "train",
        "--config",
        RECIPE,
        "--no-progress",
        *flags,
        f"sam_checkpoint={sam_file}",
        f"output_dir={out}",
        "data.0.num_videos=2",
        "data.0.synthetic.height=64",
        "data.0.synthetic.width=80",
        "data.0.synthetic.num_frames=4",
        "data.0.synthetic.max_objects=1",
        "clip.num_frames=3",
        "clip.max_objects=1",
        "optim.warmup_steps=0",
        "optim.max_steps=4",
        "val.every=0",
        "log_every=1",
        "checkpoint_every=2",
        "feature_cache.enabled=false",
    ]


@pytest.fixture
def default_sigint():
    """Ctrl-C as a fresh interpreter has it: the trainer only takes SIGINT over from Python's
    default handler (an earlier test in the same process may have left another installed)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int, how: str) -> None:
    """Press Ctrl-C while step ``step`` (1-based) runs: a real SIGINT, or a bare KeyboardInterrupt."""
    real_step = Trainer.train_step

    def train_step(self: Trainer, clips: Any) -> Any:
        if self.step + 1 == step:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)
            else:
                raise KeyboardInterrupt
        return real_step(self, clips)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_ctrl_c_in_train_saves_the_step_and_resume_ends_where_a_straight_run_ends(
    tmp_path: Path,
    tiny_sam_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    default_sigint: None,
) -> None:
    straight = tmp_path / "straight"
    assert main(_train_argv(straight, tiny_sam_file)) == 0
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 3, "signal")
    capsys.readouterr()
    assert main(_train_argv(out, tiny_sam_file)) == 130
    notice, _, rest = capsys.readouterr().err.partition("\n")  # the logged notice, then the one-line error
    assert "Ctrl-C: stopping after this step and saving a checkpoint" in notice
    assert (
        rest.count("\n") == 1
        and f"interrupted at step 3; the last checkpoint is {out / 'checkpoint-0000003'} (step 3)" in rest
    )
    monkeypatch.undo()
    assert main(_train_argv(out, tiny_sam_file, "--resume")) == 0
    final = "checkpoint-0000004/adapter_model.safetensors"
    resumed, expected = load_file(str(out / final)), load_file(str(straight / final))
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def test_a_hard_interrupt_in_train_names_the_last_checkpoint(
    tmp_path: Path, tiny_sam_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 4, "raise")
    assert main(_train_argv(out, tiny_sam_file)) == 130
    err = _one_line_error(capsys, f"the last checkpoint is {out / 'checkpoint-0000002'} (step 2)")
    assert "--resume" in err
