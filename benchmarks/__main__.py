"""Run the benchmarks and print one summary table.

    python -m benchmarks                      # everything, CPU (minutes to an hour)
    python -m benchmarks --only cost propagation --device cuda

Each benchmark writes ``benchmarks/results/<name>.json`` (config, git hash, SAM hash,
versions, machine, figures) and ``<name>.png``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.plots import RESULTS, make_plots

BENCHMARKS = ("cost", "propagation", "train_throughput", "accuracy", "encoders", "training_share")
# Written without a plot of benchmarks.plots (they draw their own); vs_sam2 needs the `bench` extra.
EXTRA_BENCHMARKS = ("vs_sam2", "profile_objects")


def summary(results_dir: Path = RESULTS) -> str:
    """One line per stored result: the benchmark, its device and its headline figures."""
    rows = []
    for name in BENCHMARKS + EXTRA_BENCHMARKS:
        path = results_dir / f"{name}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        m, dev = r["metrics"], r.get("machine", {}).get("device", "?")
        if name == "cost":
            r = m["ratios"]
            rows.append(
                (
                    name,
                    dev,
                    f"params {100 * r['params']:.2f}% of SAM; tracking {100 * r['first_object_vs_encoder']:.2f}% "
                    f"of the encoder (1 object), {100 * r['per_object_vs_encoder']:.2f}% per further object",
                )
            )
        elif name == "propagation":
            rows.append(
                (
                    name,
                    dev,
                    f"RSS {m['long_run']['rss_ratio_last_vs_first']:.3f}x from the first to the last checkpoint; "
                    f"8 objects {m['time_ratio_8_vs_1']:.2f}x the time of 1",
                )
            )
        elif name == "encoders":
            times = {k: v["seconds_per_frame"] for k, v in m.items() if isinstance(v, dict)}
            rows.append(
                (name, dev, "s per propagated frame at 1024 px: " + ", ".join(f"{k} {t:.2f}" for k, t in times.items()))
            )
        elif name == "training_share":
            gains = {k: v["trained vs untrained"]["gain"] for k, v in m.items()}
            rows.append(
                (
                    name,
                    dev,
                    "trained vs untrained (J&F points, development split): "
                    + ", ".join(f"{k} {g:+.1f}" for k, g in gains.items()),
                )
            )
        elif name == "vs_sam2":
            rows.append((name, dev, _vs_sam2(m)))
        elif name == "profile_objects":
            rows.append((name, dev, _profile(m)))
        elif name == "train_throughput":
            rows.append((name, dev, f"cached features {m['speedup']:.1f}x faster than on the fly"))
        elif name == "accuracy":
            jf = {k: v["jf_mean"] for k, v in m["video"]["methods"].items()}
            rows.append(
                (
                    name,
                    dev,
                    f"tiny SAM image mIoU {m['image']['click1_miou']:.3f} (1 click), {m['image']['box_miou']:.3f} (box); "
                    f"J&F per-frame SAM {jf['per-frame SAM']:.1f}, untrained {jf['untrained upgrade']:.1f}, "
                    f"trained {jf['trained upgrade']:.1f} ({m['video']['gain_jf_vs_per_frame_sam']:+.1f}, goal "
                    f"+{m['video']['goal_gain']:.0f})"
                    + _motion(jf)
                    + f"; quickstart {m['video']['quickstart_seconds']:.0f} s"
                    + _wider(m["video"].get("wider_check")),
                )
            )
    width = max([len(r[0]) for r in rows] + [9])
    return "\n".join(f"{n:<{width}}  {d:<5}  {t}" for n, d, t in rows)


def _vs_sam2(m: Dict[str, Any]) -> str:
    """Frame FLOPs and CPU time of each system over SAM 2.1-T's."""
    parts = []
    for system, r in m.get("ratios_vs_sam2.1-t", {}).items():
        if system == "sam2.1-t" or not r:
            continue
        figures = []
        if "frame_1_object_flops" in r:
            figures.append(f"FLOPs {r['frame_1_object_flops']:.2f}x")
        if "tracking_first_object_flops" in r:
            figures.append(f"tracking {r['tracking_first_object_flops']:.3f}x")
        if "seconds_per_frame" in r:
            figures.append(f"CPU time {r['seconds_per_frame']:.2f}x")
        parts.append(f"{system} " + ", ".join(figures))
    return "per frame (1 object) vs SAM 2.1-T: " + "; ".join(parts)


def _profile(m: Dict[str, Any]) -> str:
    """Measured time ratios against their targets."""
    parts = []
    if "tiny" in m:
        parts.append(f"tiny 8 vs 1 objects {m['tiny']['ratio_8_vs_1']:.2f}x (<= 1.5x)")
    for t in ("vit_b", "vit_t"):
        if t in m:
            r = m[t]
            parts.append(
                f"{t} tracking {100 * r['first_object_vs_encoder']:.1f} % of the encoder (<= 10 %), "
                f"{100 * r['further_object_vs_encoder']:.1f} % per further object (<= 3 %)"
            )
    return "; ".join(parts)


def _motion(jf: Dict[str, float]) -> str:
    """The trained adapter with motion-aware selection, when the result has it."""
    row = next((k for k in jf if k.endswith("+ motion")), None)
    return "" if row is None else f", with motion {jf[row]:.1f} ({jf[row] - jf['per-frame SAM']:+.1f})"


def _wider(check: Optional[Dict[str, Any]]) -> str:
    """The accuracy benchmark's check on more videos, as a clause of its summary line."""
    if not check:
        return ""
    parts = []
    for g in check["gains"]:
        if g["method"].startswith("trained upgrade"):
            interval = "" if g["low"] is None else f" [{g['low']:+.1f}, {g['high']:+.1f}]"
            parts.append(f"{g['method'].replace('trained upgrade', 'trained')} {g['gain']:+.1f}{interval}")
    return f"; on {check['videos']} videos vs per-frame SAM: " + ", ".join(parts)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARKS + EXTRA_BENCHMARKS, default=list(BENCHMARKS + EXTRA_BENCHMARKS)
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--summary-only", action="store_true", help="only plot and summarise existing results")
    args = parser.parse_args(argv)
    if not args.summary_only:
        for name in args.only:
            print(f"== {name}")
            if name == "vs_sam2" and importlib.util.find_spec("sam2") is None:
                from benchmarks.trackers import INSTALL_HINT  # imports nothing of SAM 2

                print(f"skipped: {INSTALL_HINT}")
                continue
            importlib.import_module(f"benchmarks.{name}").main(["--device", args.device])
    for png in make_plots():
        print(f"plot: {png}")
    print(summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
