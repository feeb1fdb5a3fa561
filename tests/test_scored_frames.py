"""Which frames count for J and F, per dataset, as the official evaluators choose them.

* DAVIS 2017 toolkit (``davis2017/evaluation.py``): frames 0 and T-1 of the video are dropped,
  every object is scored on every remaining frame.
* SA-V (SAM 2's ``sav_dataset/utils/sav_benchmark.py``): the first and last *annotated* frames
  are dropped, and an object is scored from the first remaining frame on which its ground truth
  or its prediction is non-empty (and only if its ground truth shows on one of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_datasets import OraclePredictor, make_davis, make_sav_val

from i2v.data.davis import DavisDataset
from i2v.data.sav import SAVDataset
from i2v.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from i2v.eval.metrics import boundary_f, evaluate_sequence, jaccard
from i2v.eval.vos import evaluate, scoring_rule


def _box(t: int, n: int, h: int = 12, w: int = 16) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[2 + n : 7 + n, 1 + t % 8 : 6 + t % 8] = True
    return m


# ----------------------------------------------------------------------------------------
# evaluate_sequence: frame selection and per-object start.
# ----------------------------------------------------------------------------------------


def test_sav_drops_first_and_last_annotated_frames() -> None:
    t = 11  # 24 fps frames 0..10, annotated every 4th: 0, 4, 8 (the last frame is not)
    gts = np.stack([[_box(k, 0)] for k in range(t)])
    preds = gts.copy()
    preds[8] = False  # a miss on the last annotated frame
    annotated = np.arange(t) % 4 == 0
    davis = evaluate_sequence(preds, gts, annotated)
    sav = evaluate_sequence(preds, gts, annotated, scoring="sav")
    np.testing.assert_array_equal(davis.frames, [4, 8])  # frames 0 and T-1 = 10 dropped
    np.testing.assert_array_equal(sav.frames, [4])  # annotated frames 0 and 8 dropped
    assert davis.j_mean[0] == pytest.approx(0.5)
    assert sav.j_mean[0] == 1.0 and sav.f_mean[0] == 1.0
    # when the last frame is annotated the two rules pick the same frames
    annotated_end = np.arange(9) % 4 == 0
    np.testing.assert_array_equal(
        evaluate_sequence(preds[:9], gts[:9], annotated_end, scoring="sav").frames,
        evaluate_sequence(preds[:9], gts[:9], annotated_end).frames,
    )
    # without dropping, both score every annotated frame
    np.testing.assert_array_equal(
        evaluate_sequence(preds, gts, annotated, drop_first_last=False, scoring="sav").frames, [0, 4, 8]
    )


def test_sav_scores_each_object_from_its_first_appearance() -> None:
    t = 8
    gts = np.zeros((t, 3, 12, 16), bool)
    preds = np.zeros_like(gts)
    for k in range(t):
        gts[k, 0] = _box(k, 0)  # always there
        if k >= 4:
            gts[k, 1] = _box(k, 1)  # appears on frame 4
        preds[k, 0] = _box(k + 1, 0)  # slightly off
        preds[k, 1] = _box(k, 1) if k >= 4 else False
    preds[3, 2] = _box(3, 2)  # object 2: a false positive, never in the ground truth
    gts[6, 1] = False  # object 1 disappears on frame 6, predicted there anyway
    davis = evaluate_sequence(preds, gts)
    sav = evaluate_sequence(preds, gts, scoring="sav")
    np.testing.assert_array_equal(davis.frames, sav.frames)  # all frames annotated
    # object 0: identical under both rules
    np.testing.assert_array_equal(sav.j[0], davis.j[0])
    assert sav.j_mean[0] == davis.j_mean[0] and sav.f_decay[0] == davis.f_decay[0]
    # object 1: frames 1-3 (absent in both masks) are not scored; frame 6 is (J = 0)
    assert np.isnan(sav.j[1, :3]).all() and np.isnan(sav.f[1, :3]).all()
    np.testing.assert_array_equal(sav.j[1, 3:], [1.0, 1.0, 0.0])
    assert sav.j_mean[1] == pytest.approx(2 / 3)
    assert davis.j_mean[1] == pytest.approx(5 / 6)  # DAVIS counts the empty frames as J = 1
    assert sav.j_recall[1] == pytest.approx(2 / 3)  # over the object's scored frames
    # object 2: never in the ground truth, so not scored at all
    assert np.isnan(sav.j[2]).all() and np.isnan([sav.j_mean[2], sav.f_mean[2]]).all()
    assert davis.j_mean[2] == pytest.approx(5 / 6)


def _official_sav_means(preds, gts, annotated):
    """Per-object (mean J, mean F) the way sav_benchmark.py loops over one object's frames."""
    frames = np.flatnonzero(annotated)[1:-1]
    out = []
    for n in range(gts.shape[1]):
        seen_gt = seen = False
        js, fs = [], []
        for t in frames:
            seen_gt |= bool(gts[t, n].any())
            seen |= bool(gts[t, n].any() or preds[t, n].any())
            if seen:
                js.append(jaccard(preds[t, n], gts[t, n]))
                fs.append(boundary_f(preds[t, n], gts[t, n]))
        out.append((np.mean(js), np.mean(fs)) if seen_gt else (np.nan, np.nan))
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_sav_rule_matches_a_frame_by_frame_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t, n = 23, 4
    gts = np.zeros((t, n, 12, 16), bool)
    for k in range(n):
        on = rng.random(t) < 0.6  # objects come and go
        for s in np.flatnonzero(on):
            gts[s, k] = _box(int(s) + k, k)
    preds = gts ^ (rng.random(gts.shape) < 0.03)
    preds[rng.random(t) < 0.3] = False
    annotated = np.arange(t) % 4 == 0
    s = evaluate_sequence(preds, gts, annotated, scoring="sav")
    want = _official_sav_means(preds, gts, annotated)
    np.testing.assert_allclose(s.j_mean, want[:, 0], equal_nan=True)
    np.testing.assert_allclose(s.f_mean, want[:, 1], equal_nan=True)


def test_unknown_scoring_rule_is_refused() -> None:
    gts = np.zeros((3, 1, 4, 4), bool)
    with pytest.raises(ValueError, match="scoring"):
        evaluate_sequence(gts, gts, scoring="ytvos")


# ----------------------------------------------------------------------------------------
# evaluate: the rule follows the dataset.
# ----------------------------------------------------------------------------------------


def test_evaluate_scores_sav_like_the_sav_evaluator(tmp_path: Path) -> None:
    make_sav_val(tmp_path, n_frames=11)  # annotated 0, 4, 8; frame 10 is the last and unannotated
    ds = SAVDataset(tmp_path, split="sav_val")
    assert scoring_rule(ds) == "sav"
    result = evaluate(OraclePredictor(ds, blind=8), ds, progress=False)
    assert result.scoring == "sav" and result.to_dict()["scoring"] == "sav"
    # frame 8, the last annotated frame, is not scored: the miss there does not count
    assert result.summary()["jf_mean"] == pytest.approx(1.0)
    forced = evaluate(OraclePredictor(ds, blind=8), ds, progress=False, scoring="davis")
    assert forced.summary()["j_mean"] == pytest.approx(0.5)  # frames 4 and 8 scored
    with pytest.raises(ValueError, match="scoring"):
        evaluate(OraclePredictor(ds, blind=8), ds, progress=False, scoring="nope")


def test_davis_and_synthetic_keep_the_davis_rule(tmp_path: Path) -> None:
    make_davis(tmp_path, n_frames=5)
    davis = DavisDataset(tmp_path, "val")
    synthetic = SyntheticVideoDataset("test", 1, config=SyntheticConfig(height=32, width=32, num_frames=4))
    assert scoring_rule(davis) == "davis" and scoring_rule(synthetic) == "davis"
    result = evaluate(OraclePredictor(davis, blind=3), davis, progress=False)
    assert result.scoring == "davis"
    # frames 1, 2, 3 scored (0 and 4 dropped): the miss on frame 3 costs a third of J
    np.testing.assert_allclose(result.objects["j_mean"], 2 / 3)
