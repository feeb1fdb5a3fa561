"""Reference methods evaluated beside the upgrade, so every number has a baseline.

``PerFrameSamPredictor`` is plain SAM run frame by frame: each frame is prompted with the
previous frame's predicted mask, both as SAM's mask prompt and as its bounding box. It has no
memory and no temporal upgrade; once it loses an object, the object stays lost. It shares the
predictor's API and prompt handling, so both are evaluated by the same runner.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from i2v.inference_state import FrameOutput, InferenceState, ObjectTrack
from i2v.model import ObjectPrompts
from i2v.video_predictor import I2VVideoPredictor


def box_from_logits(low_res_logits: torch.Tensor, scale: float) -> Optional[torch.Tensor]:
    """XYXY box (in SAM input pixels) around ``logits > 0`` of a (1, 1, h, w) map, or None."""
    fg = low_res_logits[0, 0] > 0
    if not bool(fg.any()):
        return None
    ys, xs = torch.nonzero(fg, as_tuple=True)
    box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float() * scale
    return box[None]


class PerFrameSamPredictor(I2VVideoPredictor):
    """SAM re-prompted on every frame with its previous mask (as a mask prompt and as a box)."""

    def _step(self, state: InferenceState, t: int, image: Optional[np.ndarray] = None) -> torch.Tensor:
        raw, _ = self._features(state, t, image)
        frame = self.model.prepare_frame(raw, None)
        scale = self.model.image_size / self.model.low_res_size[0]
        for track in state.tracks.values():
            if t in track.prompted_outputs:
                track.last = track.prompted_outputs[t]
                continue
            if track.last is None:
                continue
            prev = track.last.low_res_logits.to(self.device)
            box = box_from_logits(prev, scale)
            if box is None:  # lost: SAM alone has nothing to re-prompt with
                track.record_tracked(t, FrameOutput(prev.clone(), 0.0, -1.0))
                continue
            out = self.model.decode(frame, ObjectPrompts(boxes=box, mask_inputs=prev), None, 1)
            track.record_tracked(t, FrameOutput(out.low_res_logits.to(state.storage_device), float(out.iou[0]), 1.0))
        return self._masks_on_frame(state, t)
