"""Tables, CSV and JSON for evaluation results, and how to submit masks to a challenge server.

:func:`paired_gain` says how far one method's J&F is from another's on the same videos, with
a bootstrap interval over videos: on a dozen videos a few hundredths either way can be chance, and
a table of means alone does not show it.

:func:`submission_hint` is the one sentence ``sam-i2v eval --save-masks`` prints after writing
predicted masks: how to zip the folder for the DAVIS or YouTube-VOS / MOSE server.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from i2v.eval.vos import VOSResult
from i2v.io.atomic import write_text_atomic

COLUMNS = ("method", "protocol", "J&F", "J", "J-recall", "J-decay", "F", "F-recall", "F-decay")


def summary_rows(results: Sequence[VOSResult]) -> List[Dict[str, Any]]:
    rows = []
    for r in results:
        s = r.summary()
        rows.append(
            {
                "method": r.method,
                "protocol": r.protocol,
                "J&F": s["jf_mean"],
                "J": s["j_mean"],
                "J-recall": s["j_recall"],
                "J-decay": s["j_decay"],
                "F": s["f_mean"],
                "F-recall": s["f_recall"],
                "F-decay": s["f_decay"],
            }
        )
    return rows


def format_table(results: Sequence[VOSResult]) -> str:
    """A fixed-width table, figures as fractions in [0, 1] (the unit of every output, see
    :data:`UNIT`) to three decimals, as the DAVIS toolkit writes them."""
    rows = summary_rows(results)
    width = max([len("method")] + [len(r["method"]) for r in rows]) + 2
    lines = [f"{'method':<{width}}{'protocol':<10}" + "".join(f"{c:>10}" for c in COLUMNS[2:])]
    for r in rows:
        lines.append(f"{r['method']:<{width}}{r['protocol']:<10}" + "".join(f"{r[c]:>10.3f}" for c in COLUMNS[2:]))
    return "\n".join(lines)


# Every score sam-i2v eval prints or writes (tables, CSV, JSON, gains) is in this unit.
UNIT = "fraction"
UNIT_NOTE = "scores are fractions in [0, 1] (the DAVIS toolkit's unit; papers quote them x100 as percent)"


def format_header(fields: Dict[str, Any]) -> str:
    """The lines printed above the table: what produced the scores, and their unit."""
    lines = [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return "\n".join(lines + [UNIT_NOTE])


# The DAVIS 2017 toolkit's CSV columns (evaluation_method.py), in the same order.
DAVIS_GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
DAVIS_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


def write_davis_csvs(result: VOSResult, out_dir: Path, split: str) -> Dict[str, Path]:
    """Write the DAVIS toolkit's two CSVs for one result, in its format (fractions, 3 decimals).

    ``global_results-<split>.csv``: one row, ``J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,
    F-Decay``, means over all objects of all videos. ``per-sequence_results-<split>.csv``:
    ``Sequence,J-Mean,F-Mean`` with one row per object named ``<video>_<object id>``. Both
    are written atomically.
    """
    s = result.summary()
    glob = [s["jf_mean"], s["j_mean"], s["j_recall"], s["j_decay"], s["f_mean"], s["f_recall"], s["f_decay"]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(DAVIS_GLOBAL_COLUMNS)
    writer.writerow([f"{v:.3f}" for v in glob])
    paths = {
        "global": out_dir / f"global_results-{split}.csv",
        "per_sequence": out_dir / f"per-sequence_results-{split}.csv",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths["global"], buf.getvalue())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(DAVIS_SEQUENCE_COLUMNS)
    for row in result.object_rows():
        writer.writerow([row["name"], f"{row['j_mean']:.3f}", f"{row['f_mean']:.3f}"])
    write_text_atomic(paths["per_sequence"], buf.getvalue())
    return paths


# The method every other is compared with when it was evaluated.
BASELINE = "per-frame SAM"


def _per_video_gain(base: VOSResult, other: VOSResult) -> tuple:
    """Per video: the sum over its objects of other's J&F minus base's, and how many objects."""
    if [r.name for r in base.rows] != [r.name for r in other.rows] or any(
        len(base.objects[k]) != len(other.objects[k]) for k in ("j_mean", "f_mean")
    ):
        raise ValueError(
            f"{other.method!r} and {base.method!r} were not scored on the same videos and objects; "
            "evaluate both on the same dataset and indices to compare them."
        )

    def jf(r: VOSResult) -> np.ndarray:
        return (np.asarray(r.objects["j_mean"], float) + np.asarray(r.objects["f_mean"], float)) / 2

    diff = jf(other) - jf(base)
    video = np.repeat(np.arange(len(base.rows)), [r.num_objects for r in base.rows])
    if len(video) != len(diff):
        raise ValueError(f"{base.method!r} has {len(diff)} object scores but its videos list {len(video)} objects.")
    scored = ~np.isnan(diff)  # objects never on a scored frame have no J / F for either method
    sums = np.bincount(video[scored], weights=diff[scored], minlength=len(base.rows))
    counts = np.bincount(video[scored], minlength=len(base.rows)).astype(float)
    keep = counts > 0
    return sums[keep], counts[keep]


def paired_gain(
    base: VOSResult, other: VOSResult, confidence: float = 0.95, resamples: int = 9999, seed: int = 0
) -> Dict[str, Any]:
    """J&F of ``other`` minus ``base``'s (a fraction, like every score), with a paired bootstrap interval.

    The gain is the difference of the two methods' overall J&F (means over all objects). The
    interval resamples whole videos (objects of one video are not independent) and recomputes
    the object-weighted mean gain, ``resamples`` times (percentile interval,
    ``scipy.stats.bootstrap``). With fewer than two scored videos there is no interval.

    Returns:
        ``{"gain", "low", "high", "confidence", "videos"}``; ``low`` / ``high`` are None
        without an interval.
    """
    from scipy.stats import bootstrap

    sums, counts = _per_video_gain(base, other)
    out: Dict[str, Any] = {
        "gain": float("nan"),
        "low": None,
        "high": None,
        "confidence": confidence,
        "videos": int(len(sums)),
    }
    if not len(sums):
        return out
    out["gain"] = float(sums.sum() / counts.sum())
    if len(sums) < 2:
        return out
    per_video = sums / counts
    if np.allclose(per_video, per_video[0]):  # every resample gives the same mean
        out["low"] = out["high"] = out["gain"]
        return out

    def mean_gain(s: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return s.sum(axis=axis) / c.sum(axis=axis)

    res = bootstrap(
        (sums, counts),
        mean_gain,
        n_resamples=resamples,
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    out["low"] = float(res.confidence_interval.low)
    out["high"] = float(res.confidence_interval.high)
    return out


def gains_vs_baseline(results: Sequence[VOSResult], baseline: str = BASELINE) -> List[Dict[str, Any]]:
    """:func:`paired_gain` of every method over ``baseline`` under the same protocol."""
    rows = []
    for base in (r for r in results if r.method == baseline):
        for other in results:
            if other.protocol == base.protocol and other.method != baseline:
                rows.append(
                    {
                        "method": other.method,
                        "baseline": baseline,
                        "protocol": base.protocol,
                        **paired_gain(base, other),
                    }
                )
    return rows


def format_gain(row: Dict[str, Any]) -> str:
    """One line: ``<method> vs <baseline> (<protocol>): J&F +0.027, 95% interval ...``."""
    text = f"{row['method']} vs {row['baseline']} ({row['protocol']}): J&F {row['gain']:+.3f}"
    if row["low"] is None:
        return text + " (one video: no interval)"
    pct = round(100 * row["confidence"])
    return text + f", {pct}% interval {row['low']:+.3f} to {row['high']:+.3f} over {row['videos']} videos"


def write_reports(results: Sequence[VOSResult], out_dir: Path, extra: Dict[str, Any]) -> Dict[str, Path]:
    """Write ``results.csv`` (summary) and ``results.json`` (``extra``, the unit, and per method:
    summary, per-video and per-object rows; gains). Scores are fractions (:data:`UNIT`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows(summary_rows(results))
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    write_text_atomic(paths["csv"], buf.getvalue())
    payload = {**extra, "unit": UNIT, "results": [r.to_dict() for r in results], "gains": gains_vs_baseline(results)}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, default=float) + "\n")
    return paths


def submission_hint(dataset: str, masks_dir: Union[str, Path]) -> str:
    """One sentence on zipping ``masks_dir`` (``<video>/<frame>.png`` inside) for ``dataset``'s server.

    DAVIS takes the video folders at the top of the archive, YouTube-VOS inside a top-level
    ``Annotations/`` folder; for other servers the hint points to their own instructions.
    """
    folder = Path(masks_dir)
    if dataset == "davis":
        return (
            f"To submit, zip the video folders at the top of the archive (cd {folder} && "
            f"zip -r ../{folder.name or 'submission'}.zip .) and upload the zip to the DAVIS "
            f"challenge's evaluation server."
        )
    if dataset == "ytvos":
        if folder.name == "Annotations":
            how = f"cd {folder.parent} && zip -r submission.zip Annotations"
        else:
            how = (
                f"e.g. mkdir -p sub && cp -r {folder} sub/Annotations && cd sub && zip -r ../submission.zip Annotations"
            )
        return (
            f"To submit, zip the video folders inside a top-level Annotations/ folder "
            f"({how}) and upload the zip to the YouTube-VOS challenge's server."
        )
    server = {"mose": "MOSE", "sav": "SA-V"}.get(dataset, dataset)
    return (
        f"To submit, pack the video folders of {folder} as the {server} server's instructions "
        f"ask (its layout is <video>/<frame>.png) and upload the archive there."
    )
