"""Tracking policies: how the predictor tracks the objects of a frame (see :mod:`.base`).

- :class:`DefaultPolicy`: the usual prompts (prior and memory), SAM's single-mask output, as
  trained;
- :class:`MotionAwarePolicy`: motion-aware mask selection after SAMURAI (:mod:`i2v.motion`).
"""

from i2v.policies.base import ObjectInput, PolicyOutput, PriorOptions, TrackingPolicy
from i2v.policies.default import DefaultPolicy
from i2v.policies.motion_aware import MotionAwarePolicy

__all__ = [
    "DefaultPolicy",
    "MotionAwarePolicy",
    "ObjectInput",
    "PolicyOutput",
    "PriorOptions",
    "TrackingPolicy",
]
