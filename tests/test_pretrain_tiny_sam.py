"""The script that made the bundled tiny SAM still runs: two steps of each of its modes on a
tiny budget (the real runs take an hour and are not repeated here; see checkpoints/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from i2v.checkpoints import pretrain_tiny_sam as pretrain
from i2v.checkpoints import promptable
from i2v.sam_builder import read_state_dict


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The script sets torch's thread count for its process; later tests must not inherit it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


SMOKE = ["--steps", "2", "--batch-size", "2", "--eval-instances", "2", "--periodic-eval-instances", "1"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [[], ["--corr-weight", "0.5", "--max-gap", "2"]], ids=["promptable", "correspondence"]
)
def test_two_steps_write_a_loadable_checkpoint_and_report(tmp_path: Path, extra) -> None:
    report = pretrain.main([*SMOKE, *extra, "--out", str(tmp_path)])
    assert report["steps"] == 2 and report["images_seen"] == 4
    assert set(report["metrics"]) == {"click1_miou", "click1_oracle_miou", "click3_miou", "box_miou", "instances"}
    assert all(0.0 <= v <= 1.0 for k, v in report["metrics"].items() if k != "instances")
    assert all(np.isfinite(row["loss"]) for row in report["train_log"])
    assert ("corr" in report["train_log"][-1]) == bool(extra)
    saved = json.loads((tmp_path / pretrain.METRICS_NAME).read_text())
    assert saved["sha256"] == report["sha256"]
    state = read_state_dict(tmp_path / pretrain.CHECKPOINT_NAME)
    assert all(t.dtype == torch.float32 for t in state.values())


def test_prompts_follow_the_recipe() -> None:
    """First prompts as the recipe says: a point inside each mask, a noisy box around it, and
    corrective clicks on an error pixel with the error's sign."""
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 40, 50), dtype=bool)
    masks[0, 5:15, 10:30] = True
    masks[1, 20:38, 2:9] = True
    points = promptable.uniform_points(masks, rng)
    assert all(masks[i, int(y), int(x)] for i, (x, y) in enumerate(points))
    boxes = promptable.noisy_boxes(masks, rng)
    assert boxes.shape == (2, 4) and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, [0, 2]] <= 49).all() and (boxes[:, [1, 3]] <= 39).all() and (boxes >= 0).all()
    tight = promptable.tight_boxes(masks)
    assert tight.tolist() == [[10, 5, 29, 14], [2, 20, 8, 37]]
    assert np.abs(boxes - tight).max() <= 0.2 * 20 + 1e-9  # at most 2 std of 10 % of the longest side
    pred = masks.copy()
    pred[0, 5:15, 10:20] = False  # a miss: positive click
    pred[1, 0:3, 0:3] = True  # a false alarm: negative click
    coords, labels = promptable.error_clicks(pred, masks, rng)
    (x0, y0), (x1, y1) = coords.astype(int)
    assert labels.tolist() == [1.0, 0.0]
    assert masks[0, y0, x0] and not pred[0, y0, x0] and pred[1, y1, x1] and not masks[1, y1, x1]
    point, label = promptable.eval_click(pred[0], masks[0])
    assert label == 1.0 and masks[0, int(point[1]), int(point[0])] and not pred[0, int(point[1]), int(point[0])]
