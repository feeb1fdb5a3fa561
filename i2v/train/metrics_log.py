"""``metrics.jsonl``: the training run's log, one JSON object per line.

On ``--resume`` the lines of steps past the checkpoint (about to be redone) and a line cut
short by a kill are dropped; that rewrite is atomic, so a kill or a full disk during it leaves
the old log whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from i2v.io.atomic import write_text_atomic

METRICS_NAME = "metrics.jsonl"


def _logged_step(line: str, unreadable: int) -> int:
    """The step a metrics line records, or ``unreadable`` for a blank or cut-short line."""
    try:
        return int(json.loads(line).get("step", 0)) if line.strip() else unreadable
    except (ValueError, AttributeError, TypeError):  # not JSON, or not a JSON object
        return unreadable


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended and flushed as it comes."""

    def __init__(self, path: Path, resume_step: Optional[int]) -> None:
        """Open the log for appending; with ``resume_step``, first drop the lines of later steps."""
        self.path = path
        if resume_step is not None and path.is_file():
            # the killed run logged steps past its last checkpoint; they are about to be redone
            # (a kill mid-write can also leave its last line cut short: it is dropped too)
            keep = [ln for ln in path.read_text().splitlines() if _logged_step(ln, resume_step + 1) <= resume_step]
            write_text_atomic(path, "".join(ln + "\n" for ln in keep))
        self.file = open(path, "a")

    def write(self, record: Dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
