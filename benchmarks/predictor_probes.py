"""Probes that measure a video predictor from the outside, whichever library it comes from.

Every figure of :mod:`benchmarks.vs_sam2`, :mod:`benchmarks.profile_objects`,
:mod:`benchmarks.gpu` and :mod:`benchmarks.cost` is taken around a predictor's own
``propagate_in_video``: nothing here re-implements a step. The split between the image encoder
and the rest of a frame ("tracking") comes from forward hooks on the encoder module.

- :class:`FlopMeter`: ``FlopCounterMode`` plus scaled-dot-product attention counted from the
  call shapes (the counter books SDPA only on some kernels), readable at any moment.
- :class:`EncoderTap`: hooks on an image encoder that add up its FLOPs and seconds per call and,
  when asked, replay its first output instead of running it again (for warm-up frames whose
  encoder cost is not being measured; outputs have the same shapes, so what follows costs the
  same).
- :func:`state_bytes`: bytes of the tensors, arrays and byte strings an object holds.
- :func:`write_jpeg_video`: the synthetic video, as a folder of JPEGs both libraries read.
"""

from __future__ import annotations

import resource
import sys
import time
import types
from pathlib import Path
from typing import Any, Iterable, List, Optional, Set

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.flop_count import AttentionTally


class FlopMeter:
    """FLOPs (2 per multiply-accumulate, matmul-like ops and attention) counted while active.

    ``total()`` can be read at any moment inside the ``with`` block: the counter's own SDPA
    figures are replaced by the tally from shapes, so attention is counted once on every
    device and torch version.
    """

    def __init__(self) -> None:
        self.counter = FlopCounterMode(display=False)
        self.tally = AttentionTally()

    def __enter__(self) -> "FlopMeter":
        self.counter.__enter__()
        self.tally.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.tally.__exit__(*exc)
        self.counter.__exit__(*exc)

    def total(self) -> int:
        by_op = self.counter.get_flop_counts().get("Global", {})
        sdpa = sum(v for op, v in by_op.items() if "scaled_dot_product" in str(op))
        return int(self.counter.get_total_flops() - sdpa + self.tally.flops)


class EncoderTap:
    """Forward hooks on ``encoder``: FLOPs (when a :class:`FlopMeter` is attached) and seconds
    of every call, and an optional replay of its first output.

    Attributes:
        flops: FLOPs of the calls since the last :meth:`reset`.
        seconds: wall seconds of those calls (CUDA synchronised around each when on a GPU).
        calls: how many calls.
        replay: while True, a call returns the first output ever computed, without running.
        live_calls: calls that ran the encoder, since the tap was made.
    """

    def __init__(self, encoder: nn.Module, meter: Optional[FlopMeter] = None) -> None:
        self.encoder = encoder
        self.meter = meter
        self.replay = False
        self.live_calls = 0
        self._stored: Any = None
        self._start_flops = 0
        self._start_time = 0.0
        self.reset()
        forward = encoder.forward

        def tapped(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if self.replay and self._stored is not None:
                return _containers_copied(self._stored)
            out = forward(*args, **kwargs)
            self.live_calls += 1
            if self._stored is None:
                self._stored = _containers_copied(out)  # callers may fill the dicts they get (SAM 2 does)
            return out

        encoder.forward = types.MethodType(tapped, encoder)
        self._handles = [
            encoder.register_forward_pre_hook(self._pre),
            encoder.register_forward_hook(self._post),
        ]

    def prime(self, output: Any) -> None:
        """Replay ``output`` (an output of this encoder) from now on, without running it once."""
        self._stored = _containers_copied(output)
        self.replay = True

    def reset(self) -> None:
        self.flops, self.seconds, self.calls = 0, 0.0, 0

    def _sync(self) -> None:
        param = next(self.encoder.parameters(), None)
        if param is not None and param.device.type == "cuda" and not isinstance(param, torch._subclasses.FakeTensor):
            torch.cuda.synchronize(param.device)

    def _pre(self, module: nn.Module, args: Any) -> None:
        self._sync()
        self._start_flops = self.meter.total() if self.meter is not None else 0
        self._start_time = time.perf_counter()

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._start_time
        if self.meter is not None:
            self.flops += self.meter.total() - self._start_flops
        self.calls += 1

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        del self.encoder.forward  # back to the class's forward


def _containers_copied(x: Any) -> Any:
    """``x`` with its dicts, lists and tuples copied, its tensors shared."""
    if isinstance(x, dict):
        return type(x)((k, _containers_copied(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return type(x)(_containers_copied(v) for v in x)
    return x


def state_bytes(obj: Any, exclude: Iterable[Any] = ()) -> int:
    """Bytes held by ``obj``: tensor storages (each counted once), numpy arrays and byte strings,
    found through dicts, sequences, sets and object attributes. Modules, functions, classes and
    the objects in ``exclude`` (and everything only they hold) are skipped."""
    seen: Set[int] = {id(x) for x in exclude}
    storages: Set[Any] = set()
    total = 0
    stack: List[Any] = [obj]
    while stack:
        x = stack.pop()
        if id(x) in seen or x is None or isinstance(x, (int, float, str, bool, torch.device, torch.dtype)):
            continue
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            storage = x.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes(), str(x.device))
            if key not in storages:
                storages.add(key)
                total += storage.nbytes()
        elif isinstance(x, np.ndarray):
            total += x.nbytes
        elif isinstance(x, (bytes, bytearray)):
            total += len(x)
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)
        elif isinstance(x, (nn.Module, types.ModuleType, types.FunctionType, types.MethodType, type)):
            continue
        else:
            attrs = getattr(x, "__dict__", None)
            if attrs is not None:
                stack.extend(attrs.values())
            for slot in getattr(type(x), "__slots__", ()):
                stack.append(getattr(x, slot, None))
    return total


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB).

    On Linux this is VmHWM, the peak of the process's own memory: ``ru_maxrss`` would carry over
    the peak of a parent that forked and exec'd it (as a "spawn" worker is started).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def object_boxes(size: int, count: int) -> List[List[float]]:
    """``count`` boxes (x0, y0, x1, y1) on a ``size`` px frame, in a 4-column grid."""
    boxes = []
    for k in range(count):
        col, row = k % 4, k // 4
        x0 = size * (0.06 + 0.23 * col)
        y0 = size * (0.12 + 0.42 * row)
        boxes.append([x0, y0, x0 + 0.15 * size, y0 + 0.3 * size])
    return boxes


def write_jpeg_video(folder: Path, frames: int, size: int, objects: int = 8, seed: int = 0) -> List[List[float]]:
    """Write ``frames`` JPEGs (``00000.jpg``, ...) of ``objects`` bright boxes drifting right over
    smooth noise; returns the boxes on frame 0 (pixels, x0 y0 x1 y1)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coarse = rng.random((frames, max(size // 16, 2), max(size // 16, 2), 3))
    boxes = object_boxes(size, objects)
    colours = rng.integers(120, 255, size=(objects, 3))
    for t in range(frames):
        img = np.kron(coarse[t], np.ones((16, 16, 1)))[:size, :size] * 80
        img = np.pad(img, ((0, size - img.shape[0]), (0, size - img.shape[1]), (0, 0)), mode="edge")
        for (x0, y0, x1, y1), c in zip(boxes, colours):
            dx = int(0.004 * size * t)
            img[int(y0) : int(y1), int(x0) + dx : int(x1) + dx] = c
        Image.fromarray(img.astype(np.uint8)).save(folder / f"{t:05d}.jpg", quality=90)
    return boxes
