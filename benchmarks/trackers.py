"""The systems the side-by-side benchmarks run: SAM 2.1 (the optional ``sam2`` package, random
weights from its own configs) and sam-i2v's SAM types, behind one small ``Tracker`` wrapper
(SAM 2's predictor API, the image encoder the probes hook, where a state keeps its frames).
Used by ``benchmarks/vs_sam2.py`` and ``benchmarks/gpu.py``."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch
from torch import nn

from benchmarks.predictor_probes import state_bytes

SAM2_CONFIGS = {
    "sam2.1-t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1-b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
}
I2V_CONFIGS = ("vit_b", "vit_t", "tiny")
SYSTEMS = tuple(SAM2_CONFIGS) + I2V_CONFIGS
INSTALL_HINT = (
    "SAM 2.1 (the `sam2` package) is not installed; install the benchmark extra: "
    "SAM2_BUILD_CUDA=0 pip install -e '.[bench]' (its CUDA extension is not needed; add "
    "--no-build-isolation to build it against the installed torch instead of downloading one)."
)


def sam2_available() -> bool:
    return importlib.util.find_spec("sam2") is not None


@dataclass
class Tracker:
    """A video predictor with SAM 2's API, and what the probes need to know about it.

    Attributes:
        name: the system's name (a key of :data:`SYSTEMS`).
        predictor: ``init_state`` / ``add_new_points_or_box`` / ``propagate_in_video``.
        encoder: the image encoder module the hooks go on.
        frames_of: the part of a state that holds decoded frames.
    """

    name: str
    predictor: Any
    encoder: nn.Module
    frames_of: Callable[[Any], Any]

    @property
    def is_sam2(self) -> bool:
        return self.name in SAM2_CONFIGS

    def start(self, video: Path, boxes: Sequence[Sequence[float]]) -> Any:
        """A state on ``video`` with object k + 1 prompted by ``boxes[k]`` on frame 0."""
        state = self.predictor.init_state(str(video))
        for k, box in enumerate(boxes):
            self.predictor.add_new_points_or_box(state, 0, k + 1, box=list(box))
        return state

    def propagate(self, state: Any, frames: int) -> Iterator[int]:
        """Frame indices 0..frames, as ``propagate_in_video`` produces them."""
        for t, _, _ in self.predictor.propagate_in_video(state, max_frame_num_to_track=frames):
            yield t

    def state_split(self, state: Any) -> Dict[str, int]:
        """Bytes of the state apart from decoded frames, and of the frames it holds."""
        frames = self.frames_of(state)
        return {"state": state_bytes(state, exclude=[frames]), "frames": state_bytes(frames)}


def _no_bar(iterable: Any = None, *args: Any, **kwargs: Any) -> Any:
    return iterable


def build_tracker(name: str, device: str = "cpu", image_size: Optional[int] = None) -> Tracker:
    """System ``name`` with random weights (the bundled tiny SAM for ``tiny``).

    ``image_size`` changes SAM 2's input resolution (its default is 1024); sam-i2v's SAM types
    keep theirs.
    """
    torch.manual_seed(0)
    if name in SAM2_CONFIGS:
        if not sam2_available():
            raise RuntimeError(INSTALL_HINT)
        import sam2.sam2_video_predictor as sam2_vp
        import sam2.utils.misc as sam2_misc
        from sam2.build_sam import build_sam2_video_predictor

        sam2_vp.tqdm = _no_bar  # no progress bars inside timed propagation
        sam2_misc.tqdm = _no_bar
        overrides = [] if image_size in (None, 1024) else [f"++model.image_size={image_size}"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = build_sam2_video_predictor(
                SAM2_CONFIGS[name], ckpt_path=None, device=device, hydra_overrides_extra=overrides
            )
        return Tracker(name, predictor, predictor.image_encoder, lambda s: s["images"])
    if name not in I2V_CONFIGS:
        raise ValueError(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}.")
    from benchmarks.cost import worst_case
    from i2v.build import build_sam_i2v
    from i2v.video_predictor import I2VVideoPredictor

    model = worst_case(build_sam_i2v(name, device=device, allow_random_sam=True))
    return Tracker(name, I2VVideoPredictor(model, progress=False), model.sam.image_encoder, lambda s: s.video)
