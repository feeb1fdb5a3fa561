"""PNG plots of the benchmark results (one per result JSON in benchmarks/results/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _device(result: Dict[str, Any]) -> str:
    m = result.get("machine", {})
    return str(m.get("gpu") or m.get("cpu") or m.get("device", "?"))


def plot_cost(result: Dict[str, Any], ax) -> None:
    objects = result["metrics"]["objects"]
    counts = sorted(objects, key=int)
    x = np.arange(len(counts))
    for k, (name, label) in enumerate((("default", "tracking"), ("motion", "tracking, motion-aware selection"))):
        ax.bar(x + 0.4 * k, [objects[c][name]["flops"] / 1e9 for c in counts], width=0.4, label=label)
    encoder = result["metrics"]["encoder_flops"] / 1e9
    ax.axhline(0.05 * encoder, color="k", linestyle="--", label="5% of the image encoder")
    ax.set_xticks(x + 0.2, counts)
    ax.set(xlabel="objects", ylabel="GFLOPs per frame", title="tracking cost per propagated frame (vit_b, 1024 px)")
    ax.legend(fontsize=7)


def plot_propagation(result: Dict[str, Any], ax) -> None:
    long = result["metrics"]["long_run"]
    frames = sorted(long["peak_rss_mb"], key=int)
    ax.plot([int(f) for f in frames], [long["peak_rss_mb"][f] for f in frames], "o-", label="peak RSS (MB)")
    ax.set_xscale("log")
    ax.set(xlabel="frames propagated", ylabel="peak RSS (MB)", title="memory on a long video (tiny config)")
    ax2 = ax.twinx()
    ms = long["median_ms_per_frame"]
    ax2.plot([int(f) for f in sorted(ms, key=int)], [ms[f] for f in sorted(ms, key=int)], "s--", color="tab:red")
    ax2.set_ylabel("median ms / frame", color="tab:red")


def plot_train_throughput(result: Dict[str, Any], ax) -> None:
    modes = result["metrics"]["modes"]
    names = list(modes)
    ax.bar(names, [1.0 / modes[n]["seconds_per_step"] for n in names])
    ax.set(ylabel="steps / s", title=f"training throughput (x{result['metrics']['speedup']:.1f} with the cache)")


def plot_encoders(result: Dict[str, Any], ax) -> None:
    runs = {k: v for k, v in result["metrics"].items() if isinstance(v, dict)}
    ax.bar([k.replace("/", "\n") for k in runs], [v["seconds_per_frame"] for v in runs.values()])
    threads = result.get("config", {}).get("threads")
    ax.set(ylabel="s / propagated frame", title=f"image encoders at 1024 px ({threads} CPU threads, random weights)")


def plot_training_share(result: Dict[str, Any], ax) -> None:
    gains = {k: v["trained vs untrained"] for k, v in result["metrics"].items()}
    names = list(gains)
    mid = [gains[n]["gain"] for n in names]
    err = [[m - gains[n]["low"] for n, m in zip(names, mid)], [gains[n]["high"] - m for n, m in zip(names, mid)]]
    ax.bar(names, mid, yerr=err, capsize=4)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.tick_params(axis="x", labelrotation=30)
    ax.set(ylabel="J&F points, trained - untrained (95 % interval)", title="what training adds (development split)")


def plot_accuracy(result: Dict[str, Any], ax) -> None:
    if isinstance(ax, (list, tuple)):  # the J&F table beside its breakdown by phase
        ax, phase_ax = ax
        plot_phases(result["metrics"]["video"]["breakdown"], phase_ax)
    video = result["metrics"]["video"]
    methods = list(video["methods"])
    keys = (("j_mean", "J"), ("f_mean", "F"), ("jf_mean", "J&F"))
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        ax.bar(
            [m + (i - 1) * width for m in range(len(methods))],
            [video["methods"][m][key] for m in methods],
            width,
            label=label,
        )
    goal = video["methods"]["per-frame SAM"]["jf_mean"] + video["goal_gain"]
    ax.axhline(goal, color="k", linestyle="--", label=f"goal: per-frame SAM + {video['goal_gain']:.0f} J&F")
    ax.set_xticks(range(len(methods)), [m.replace(" + ", "\n+ ") for m in methods])
    ax.set(ylabel="score (%)", ylim=(0, 100), title="held-out synthetic videos, first-frame mask (sam-i2v quickstart)")
    lines = [_gain_text(video.get(k), "quickstart videos") for k in ("quickstart_gain", "quickstart_gain_motion")]
    check = video.get("wider_check") or {}
    lines += [
        _gain_text(g, f"{check['videos']} videos")
        for g in check.get("gains", [])
        if g["method"].startswith("trained upgrade")
    ]
    text = "\n".join(t for t in lines if t)
    if text:  # under the bars, where no legend or label is
        ax.text(
            0.5,
            0.03,
            text,
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=6.5,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"},
        )
    ax.legend(fontsize=7, loc="upper right")


def _gain_text(gain: Optional[Dict[str, Any]], where: str) -> str:
    """``trained - per-frame SAM: +2.7 [-3.1, +8.2] (12 videos)``, or "" without a gain."""
    if not gain:
        return ""
    interval = "" if gain["low"] is None else f" [{gain['low']:+.1f}, {gain['high']:+.1f}]"
    return f"{gain['method']} - per-frame SAM: {gain['gain']:+.1f}{interval} J&F ({where}, 95% interval)"


def plot_phases(breakdown: Dict[str, Any], ax) -> None:
    """J per phase of each method, with the frozen SAM's one-step ceiling on clean frames."""
    methods = breakdown["phases"]
    phases = list(next(iter(methods.values())))
    width = 0.8 / len(methods)
    for i, (name, scores) in enumerate(methods.items()):
        xs = [p + (i - (len(methods) - 1) / 2) * width for p in range(len(phases))]
        ax.bar(xs, [100 * (scores[p]["j"] or 0.0) for p in phases], width, label=name)
    counts = next(iter(methods.values()))
    ax.set_xticks(range(len(phases)), [f"{p}\n({counts[p]['pairs']} pairs)" for p in phases])
    ceiling = breakdown["one_step_ceiling"].get("prev_mask_and_box")
    if ceiling is not None:
        ax.axhline(100 * ceiling, color="k", linestyle=":", label="SAM one step from the true previous mask")
    ax.set(ylabel="J (%)", ylim=(0, 100), title="J by what happens to the object")
    ax.legend(fontsize=7)


# Benchmarks whose plot can have more than one panel: how many a result needs.
PANELS: Dict[str, Callable[[Dict[str, Any]], int]] = {
    "accuracy": lambda r: 2 if "breakdown" in r["metrics"]["video"] else 1,  # older results lack it
}

PLOTTERS: Dict[str, Callable[[Dict[str, Any], Any], None]] = {
    "cost": plot_cost,
    "propagation": plot_propagation,
    "train_throughput": plot_train_throughput,
    "accuracy": plot_accuracy,
    "encoders": plot_encoders,
    "training_share": plot_training_share,
}


def plot_result(name: str, path: Path) -> Optional[Path]:
    """Write the PNG of benchmark ``name``'s result JSON ``path`` beside it (same stem); None
    when the benchmark has no plot."""
    plotter = PLOTTERS.get(name)
    if plotter is None:
        return None
    result = json.loads(Path(path).read_text())
    panels = PANELS[name](result) if name in PANELS else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4))
    plotter(result, list(axes) if panels > 1 else axes)
    fig.text(0.01, 0.01, f"device: {_device(result)}", fontsize=7)
    fig.tight_layout()
    png = Path(path).with_suffix(".png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def make_plots(results_dir: Path = RESULTS) -> List[Path]:
    """Write ``<name>.png`` beside each ``<name>.json`` that has a plotter."""
    written = []
    for name in PLOTTERS:
        path = results_dir / f"{name}.json"
        if path.is_file():
            written.append(plot_result(name, path))
    return written
