"""Atomic file writes: a reader never sees a half-written file.

:func:`atomic_path` writes beside the target as ``.<name>.<random>.tmp`` and renames it into
place; :func:`remove_stale_temporaries` deletes such files that a killed process left behind;
:func:`disk_full_error` recognises a full disk behind writers that hide the errno.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Union

PathLike = Union[str, Path]
_TMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask.

    Read from ``/proc`` where there is one: setting it and setting it back, the only portable
    way, leaves a moment in which files another thread creates get no umask at all.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


# Below this much free space, a writer's failure is taken to be the full disk.
_NEARLY_FULL_BYTES = 64 << 20


def disk_full_error(exc: BaseException, path: PathLike) -> Optional[OSError]:
    """An ``OSError(ENOSPC)`` naming ``path`` if ``exc`` comes from a full disk, else None.

    Writers that are not plain ``open()`` lose the errno: safetensors reports "No space left
    on device" inside its own error type, ``torch.save`` only "file write failed". So the
    message is read, and a failure on a disk with almost no free space counts as well.
    """
    if isinstance(exc, OSError):
        return exc if exc.errno == errno.ENOSPC else None
    text = str(exc)
    full = "No space left on device" in text or "StorageFull" in text
    if not full:
        try:
            full = shutil.disk_usage(Path(path).parent).free < _NEARLY_FULL_BYTES
        except OSError:
            full = False
    return OSError(errno.ENOSPC, f"No space left on device ({text})", str(path)) if full else None


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one step.

    The result gets the permissions a plain ``open()`` would give it (0666 less the umask),
    whatever the writer did to the temporary file: ``mkstemp`` creates it 0600, and some
    writers (safetensors' ``save_file``) replace it with a new file of their own.
    On error the temporary file is removed and ``path`` keeps its old content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except Exception as exc:
            full = disk_full_error(exc, target)
            if full is None or full is exc:
                raise
            raise full from exc
        os.chmod(tmp_path, 0o666 & ~current_umask())
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temporaries(
    folder: PathLike, older_than: Optional[float] = None, recursive: bool = False
) -> List[Path]:
    """Delete the temporary files :func:`atomic_path` leaves when its process is killed.

    Args:
        folder: where to look (a missing folder has none).
        older_than: only files last modified before this time (``time.time()`` seconds), so
            that a write in progress in another process is left alone; None: now.
        recursive: also look in sub-folders.

    Returns:
        The files removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    cutoff = time.time() if older_than is None else older_than
    pattern = f".*.*{_TMP_SUFFIX}"
    removed: List[Path] = []
    for p in root.rglob(pattern) if recursive else root.glob(pattern):
        try:
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:  # removed meanwhile by its own process
            continue
    return removed
