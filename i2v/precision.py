"""Mixed precision that cannot break tracking.

Users wrap inference in ``torch.autocast`` (SAM 2's README does). Only SAM's image encoder,
where nearly all of the compute is, benefits; the rest (interpolation of masks, the memory
read-out's softmax statistics, presence, the decoder's few tokens) is cheap and numerically
fragile, and several of its CPU kernels have no bfloat16 version. So the predictor runs
everything in float32 except the image encoder, which runs under the caller's autocast.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype of the caller's ``torch.autocast`` on ``device_type``, or None when it is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type)
    except TypeError:  # torch < 2.4: separate CPU and GPU functions
        if device_type == "cpu":
            enabled, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        else:
            enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return dtype if enabled else None


class PrecisionGuard:
    """Remembers the caller's autocast and switches it off for the body of a call.

    ``encoder()`` gives back the caller's autocast (if any) for the image encoder alone.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._dtype: Optional[torch.dtype] = None
        self._device_type = "cpu"

    @contextlib.contextmanager
    def float32(self, device: torch.device) -> Iterator[None]:
        if self._depth == 0:
            self._device_type = device.type
            self._dtype = autocast_dtype(device.type)
        self._depth += 1
        try:
            with torch.autocast(device.type, enabled=False):
                yield
        finally:
            self._depth -= 1

    def encoder(self) -> contextlib.AbstractContextManager:
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self._device_type, dtype=self._dtype)


def float32_method(method: F) -> F:
    """Run a predictor method with autocast off (the object must have ``precision`` and ``device``)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.precision.float32(self.device):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
