"""Tables, CSV and JSON for evaluation results, and how to submit masks to a challenge server.

:func:`submission_hint` is the one sentence ``sam-i2v eval --save-masks`` prints after writing
predicted masks: how to zip the folder for the DAVIS or YouTube-VOS / MOSE server.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

from i2v.eval.vos import VOSResult
from i2v.io.atomic import write_text_atomic

COLUMNS = ("method", "protocol", "J&F", "J", "J-recall", "J-decay", "F", "F-recall", "F-decay")


def summary_rows(results: Sequence[VOSResult]) -> List[Dict[str, Any]]:
    rows = []
    for r in results:
        s = r.summary()
        rows.append({
            "method": r.method, "protocol": r.protocol, "J&F": s["jf_mean"], "J": s["j_mean"],
            "J-recall": s["j_recall"], "J-decay": s["j_decay"], "F": s["f_mean"],
            "F-recall": s["f_recall"], "F-decay": s["f_decay"],
        })
    return rows


def format_table(results: Sequence[VOSResult]) -> str:
    """A fixed-width table, figures in percent as DAVIS reports them."""
    rows = summary_rows(results)
    width = max([len("method")] + [len(r["method"]) for r in rows]) + 2
    lines = [f"{'method':<{width}}{'protocol':<10}" + "".join(f"{c:>10}" for c in COLUMNS[2:])]
    for r in rows:
        lines.append(f"{r['method']:<{width}}{r['protocol']:<10}" + "".join(f"{100 * r[c]:>10.1f}" for c in COLUMNS[2:]))
    return "\n".join(lines)


def write_reports(results: Sequence[VOSResult], out_dir: Path, extra: Dict[str, Any]) -> Dict[str, Path]:
    """Write ``results.csv`` (summary) and ``results.json`` (summary + per-video rows)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows(summary_rows(results))
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    write_text_atomic(paths["csv"], buf.getvalue())
    payload = {**extra, "results": [r.to_dict() for r in results]}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, default=float) + "\n")
    return paths


def submission_hint(dataset: str, masks_dir: Union[str, Path]) -> str:
    """One sentence on zipping ``masks_dir`` (``<video>/<frame>.png`` inside) for ``dataset``'s server.

    DAVIS takes the video folders at the top of the archive, YouTube-VOS inside a top-level
    ``Annotations/`` folder; for other servers the hint points to their own instructions.
    """
    folder = Path(masks_dir)
    if dataset == "davis":
        return (f"To submit, zip the video folders at the top of the archive (cd {folder} && "
                f"zip -r ../{folder.name or 'submission'}.zip .) and upload the zip to the DAVIS "
                f"challenge's evaluation server.")
    if dataset == "ytvos":
        if folder.name == "Annotations":
            how = f"cd {folder.parent} && zip -r submission.zip Annotations"
        else:
            how = (f"e.g. mkdir -p sub && cp -r {folder} sub/Annotations && cd sub && "
                   f"zip -r ../submission.zip Annotations")
        return (f"To submit, zip the video folders inside a top-level Annotations/ folder "
                f"({how}) and upload the zip to the YouTube-VOS challenge's server.")
    server = {"mose": "MOSE", "sav": "SA-V"}.get(dataset, dataset)
    return (f"To submit, pack the video folders of {folder} as the {server} server's instructions "
            f"ask (its layout is <video>/<frame>.png) and upload the archive there.")
