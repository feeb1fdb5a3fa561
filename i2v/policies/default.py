"""The default tracking policy: every object is decoded from its prior and its memory's
prompts (:func:`i2v.tracking_ops.track_objects`), exactly as training runs a tracked frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from i2v.config import ModelConfig
from i2v.model import FrameFeatures, SamI2V
from i2v.policies.base import ObjectInput, PolicyOutput, TrackingPolicy, legacy_prior_options
from i2v.tracking_ops import track_objects


@dataclass
class DefaultPolicy(TrackingPolicy):
    """SAM's single-mask output from the usual prompts (prior, memory), one decoder call per
    prompt structure; an object memory finds nowhere is absent. Keeps no per-object state."""

    def track(
        self,
        model: SamI2V,
        frame: FrameFeatures,
        frame_idx: int,
        objects: Sequence[ObjectInput],
        extent: Optional[Tuple[int, int]] = None,
    ) -> PolicyOutput:
        memories = [o.memory for o in objects]
        out = track_objects(model, frame, frame_idx, self.mask_priors(objects), memories, self.priors.box)
        return PolicyOutput(out, [None] * len(objects))

    @classmethod
    def for_config(cls, config: ModelConfig) -> "DefaultPolicy":
        """The default policy with the prior options an older config set (see
        :func:`i2v.policies.base.legacy_prior_options`)."""
        return cls(priors=legacy_prior_options(config))
