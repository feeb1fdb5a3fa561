"""The tracking-policy interface: how the objects of one frame are tracked.

The predictor (:class:`i2v.video_predictor.I2VVideoPredictor`) holds one policy and owns
everything around it: reading frames and features, the upgrader window, each object's memory
bank, prompts and outputs (:class:`i2v.inference_state.ObjectState`). A policy decides only
what happens to the tracked objects of one frame, through two calls:

- :meth:`TrackingPolicy.track` gets the model, the frame's features and, per object, an
  :class:`ObjectInput` (its mask prior, the memory entries it reads, and the state the policy
  returned for it on the previous frame of this pass); it returns a :class:`PolicyOutput`: the
  objects' outputs and new memory entries (:class:`i2v.tracking_ops.TrackedObjects`) and each
  object's new policy state. The predictor records them and passes the states back next frame.
- :meth:`TrackingPolicy.restart` is called when an object's output comes from the user (a
  prompt, and each time a pass reaches a prompted frame); it returns the object's policy state
  from there (None at the start of every pass).

Policy state is opaque to the predictor (the motion-aware policy keeps a box Kalman filter;
the default policy keeps nothing). A policy never writes the state object or the memory bank.

Whether an object's previous output is given to SAM as a mask prompt, and with its box
(:class:`PriorOptions`), is part of every policy; :meth:`TrackingPolicy.plan` applies it and
reads memory (:func:`i2v.tracking_ops.plan_prompts`), so policies share that step.

A new policy is one new module in this package with a subclass of :class:`TrackingPolicy`
(implement ``track``; override ``restart`` if it keeps state), plus its tests; the predictor
takes it as ``I2VVideoPredictor(model, policy=MyPolicy())`` (list it in
``i2v/policies/__init__.py`` to import it from ``i2v.policies``). Test its decisions by
overriding its public methods (see ``MotionAwarePolicy.candidates``) or by calling ``track``
with the inputs you want, not by patching private functions.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import torch

from i2v.config import ModelConfig
from i2v.inference_state import FrameOutput
from i2v.memory_bank import MemoryEntry
from i2v.model import FrameFeatures, SamI2V
from i2v.tracking_ops import PlannedPrompts, TrackedObjects, plan_prompts


@dataclass(frozen=True)
class PriorOptions:
    """What a tracked object's previous output gives SAM on the next frame.

    Attributes:
        mask: feed the object's latest mask to SAM's own mask-prompt input (off: memory alone
            prompts every tracked frame).
        box: also give SAM that mask's bounding box (what SAM needs to use a mask prompt).
    """

    mask: bool = True
    box: bool = True


@dataclass
class ObjectInput:
    """What a policy is told about one tracked object on a frame.

    Attributes:
        prior: (1, 1, 4h, 4w) logits of its latest output in this pass when it was present
            there, else None.
        memory: the memory entries it reads on this frame (``MemoryBank.select``).
        state: what the policy returned for it last time in this pass (None at first and after
            :meth:`TrackingPolicy.restart` returned None).
        obj_id: the client's id of the object (None where a caller does not say).
    """

    prior: Optional[torch.Tensor]
    memory: Sequence[MemoryEntry]
    state: Any = None
    obj_id: Optional[int] = None


@dataclass
class PolicyOutput:
    """What a policy returns for the N objects of one frame, in the order given.

    Attributes:
        tracked: outputs, presence, IoU and new memory entries of the objects.
        states: per object, its policy state from now on.
    """

    tracked: TrackedObjects
    states: List[Any]


@dataclass
class TrackingPolicy(ABC):
    """How the objects of one frame are tracked (see the module docstring).

    Attributes:
        priors: whether an object's previous output prompts SAM on the next frame.
    """

    priors: PriorOptions = field(default_factory=PriorOptions)

    @abstractmethod
    def track(
        self,
        model: SamI2V,
        frame: FrameFeatures,
        frame_idx: int,
        objects: Sequence[ObjectInput],
        extent: Optional[Tuple[int, int]] = None,
    ) -> PolicyOutput:
        """Segment N tracked objects on one frame and encode their new memory.

        Args:
            frame: the frame's features (upgraded with the pass's window).
            frame_idx: its index (recorded in the memory entries).
            objects: per object, its prior, memory and policy state.
            extent: (h, w) of the picture in the decoder's mask pixels (the rest of SAM's
                square input is padding); None: the whole mask.
        """

    def restart(self, model: SamI2V, output: FrameOutput) -> Any:
        """An object's policy state after the user gave ``output`` (its output on a prompted
        frame): on a prompt, and when a pass reaches a prompted frame. Default: None."""
        return None

    def mask_priors(self, objects: Sequence[ObjectInput]) -> List[Optional[torch.Tensor]]:
        """Per object, the mask prior SAM gets under this policy's options (None: none)."""
        return [o.prior if self.priors.mask else None for o in objects]

    def plan(
        self, model: SamI2V, frame: FrameFeatures, frame_idx: int, objects: Sequence[ObjectInput]
    ) -> PlannedPrompts:
        """How each object is prompted on this frame (memory read-out and priors, as
        :func:`i2v.tracking_ops.plan_prompts` decides), with this policy's prior options."""
        memories = [o.memory for o in objects]
        return plan_prompts(model, frame, frame_idx, self.mask_priors(objects), memories, self.priors.box)


def legacy_prior_options(config: ModelConfig) -> PriorOptions:
    """The prior options an older config asked for in ``memory_prompt.mask_prior`` /
    ``box_prior`` (both on unless a config turned one off; DeprecationWarning then)."""
    mp = config.memory_prompt
    options = PriorOptions(mask=bool(mp.mask_prior), box=bool(mp.box_prior))
    if options != PriorOptions():
        warnings.warn(
            "memory_prompt.mask_prior / box_prior in the model config are tracking-policy options now; "
            f"they are applied as PriorOptions(mask={options.mask}, box={options.box}). Pass "
            "policy=DefaultPolicy(priors=PriorOptions(...)) to the predictor instead.",
            DeprecationWarning,
            stacklevel=3,
        )
    return options
