"""Reference methods evaluated beside the upgrade, so every number has a baseline.

``PerFrameSamPredictor`` is plain SAM run frame by frame: each frame is prompted with the
previous frame's predicted mask, both as SAM's mask prompt and as its bounding box. It has no
memory and no temporal upgrade; once it loses an object, the object stays lost. It shares the
predictor's API and prompt handling, so both are evaluated by the same runner.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from i2v.inference_state import FrameOutput, InferenceState
from i2v.model import ObjectPrompts
from i2v.tracking_ops import prior_box
from i2v.video_predictor import I2VVideoPredictor


class PerFrameSamPredictor(I2VVideoPredictor):
    """SAM re-prompted on every frame with its previous mask (as a mask prompt and as a box)."""

    def _step(self, state: InferenceState, t: int, image: Optional[np.ndarray] = None) -> torch.Tensor:
        raw, _ = self._features(state, t, image)
        frame = self.model.prepare_frame(raw, None)
        for track in state.tracks.values():
            if t in track.prompted_outputs:
                track.resume_prompted(t, None)
                continue
            if track.last is None:
                continue
            prev = track.last.low_res_logits.to(self.device)
            box = prior_box(prev, self.model.image_size)
            if box is None:  # lost: SAM alone has nothing to re-prompt with
                track.record_tracked(t, FrameOutput(prev.clone(), 0.0, -1.0))
                continue
            out = self.model.decode(frame, ObjectPrompts(boxes=box, mask_inputs=prev), 1)
            track.record_tracked(t, FrameOutput(out.low_res_logits.to(state.storage_device), float(out.iou[0]), 1.0))
        return self._masks_on_frame(state, t)
