"""Motion-aware selection as a tracking policy: a box Kalman filter per object picks among
SAM's candidate masks, declares an object lost, and looks for it where its motion says (the
rules, and the filter itself, are in :mod:`i2v.motion`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch

from i2v.adapters.memory_prompt import appearance_stats
from i2v.config import MotionConfig
from i2v.inference_state import FrameOutput
from i2v.model import FrameFeatures, ObjectPrompts, SamI2V
from i2v.motion import (
    BoxKalman,
    Candidate,
    box_area,
    choose_candidate,
    clip_box,
    logits_box_array,
    sam_candidates,
    search_boxes,
)
from i2v.policies.base import ObjectInput, PolicyOutput, TrackingPolicy
from i2v.tracking_ops import PROMPTED_PRESENCE, TrackedObjects


@dataclass
class MotionAwarePolicy(TrackingPolicy):
    """Motion-aware mask selection (after SAMURAI). Per-object state: its
    :class:`~i2v.motion.BoxKalman`, or None until it has a box.

    Attributes:
        config: the selection's settings (:class:`i2v.config.MotionConfig`).
    """

    config: MotionConfig = field(default_factory=MotionConfig)

    def candidates(
        self, model: SamI2V, frame: FrameFeatures, prompts: ObjectPrompts, stats: Optional[torch.Tensor]
    ) -> List[Candidate]:
        """The masks one object chooses among, given its prompts and (1, READOUT_STATS)
        read-out statistics: SAM's single-mask output and its three multimask candidates.
        Override to script candidates in tests, or to propose others."""
        return sam_candidates(model, frame, prompts, stats)

    def start_filter(self, model: SamI2V, logits: torch.Tensor) -> Optional[BoxKalman]:
        """A filter for an object whose mask (``logits``, at the decoder's resolution) was just
        given, confirmed or chosen; None when the mask is empty."""
        box = logits_box_array(logits)
        if box is None:
            return None
        return BoxKalman(box, self.config.damping, model.low_res_size[1] / 64.0)

    def restart(self, model: SamI2V, output: FrameOutput) -> Optional[BoxKalman]:
        """A prompted output restarts the object's motion from what the user gave."""
        return self.start_filter(model, output.low_res_logits) if output.present else None

    def track(
        self,
        model: SamI2V,
        frame: FrameFeatures,
        frame_idx: int,
        objects: Sequence[ObjectInput],
        extent: Optional[Tuple[int, int]] = None,
    ) -> PolicyOutput:
        """The default policy's prompts, then each object's mask chosen by its motion (see
        :mod:`i2v.motion`); an object without a filter keeps SAM's single-mask output and
        starts one. Outputs are float32; ``all_logits`` holds only the chosen mask."""
        size = model.low_res_size
        picture = (size[0], size[1]) if extent is None else extent
        absent = torch.full((1, 1, *size), model.config.absent_logit, device=model.device)
        plan = self.plan(model, frame, frame_idx, objects)
        filters: List[Optional[BoxKalman]] = [o.state for o in objects]
        logits, ious, presence = [], [], []
        for i in range(len(objects)):
            stats = plan.stats[i : i + 1]
            prompts = plan.prompts[i]
            kf = filters[i]
            if kf is None or not kf.lost:
                chosen = self._follow(model, frame, prompts, stats, kf, picture)
            else:
                chosen = self._reacquire(model, frame, prompts, plan.sources[i], stats, kf, picture)
            protos = plan.prototypes
            if (
                chosen is not None
                and protos is not None
                and not self._looks_like_it(model, frame, chosen, protos[i : i + 1])
            ):
                chosen = None
            if chosen is None:
                if kf is not None:
                    kf.mark_lost()
                logits.append(absent)
                ious.append(0.0)
                presence.append(-PROMPTED_PRESENCE)
                continue
            if kf is None:
                filters[i] = self.start_filter(model, chosen.logits)
            else:
                assert chosen.box is not None  # choose_candidate never picks an empty mask
                kf.update(chosen.box)
            logits.append(chosen.logits)
            ious.append(chosen.iou)
            presence.append(chosen.presence)
        out = torch.cat(logits)
        iou = torch.tensor(ious, device=model.device)
        presence_logits = torch.tensor(presence, device=model.device)
        entries = model.make_memory(frame, frame_idx, out, iou, presence_logits, prompted=False)
        decoded = torch.tensor([p is not None for p in plan.prompts], device=model.device)
        tracked = TrackedObjects(out, out, out, iou[:, None], iou, presence_logits, entries, plan, decoded)
        return PolicyOutput(tracked, list(filters))

    @staticmethod
    def _looks_like_it(model: SamI2V, frame: FrameFeatures, chosen: Candidate, prototype: torch.Tensor) -> bool:
        """The presence head's appearance gate, applied to the mask motion chose (the decoder's
        presence logit was computed for its single-mask output)."""
        appearance = appearance_stats(frame.keys, model.memory_readout.pool_masks(chosen.logits), prototype)
        return chosen.presence - float(model.presence_head.gate(appearance)[0]) > 0

    def _follow(
        self,
        model: SamI2V,
        frame: FrameFeatures,
        prompts: Optional[ObjectPrompts],
        stats: torch.Tensor,
        kf: Optional[BoxKalman],
        picture: Tuple[int, int],
    ) -> Optional[Candidate]:
        """An object being followed (or without a filter yet): the candidate its motion picks."""
        cfg = self.config
        if prompts is None:  # memory finds it nowhere
            if kf is not None:
                kf.predict()
            return None
        cands = self.candidates(model, frame, prompts, stats)
        if kf is None:  # nothing known of its motion yet: SAM's own answer
            first = cands[0]
            return first if first.box is not None and first.presence > 0 else None
        threshold = cfg.min_iou if kf.knows_velocity else 0.0
        predicted = clip_box(kf.predict(), picture)
        if predicted is None:  # it has left the picture
            return None
        max_area = cfg.max_growth * max(box_area(kf.reference_box()), box_area(predicted))
        return choose_candidate(cands, predicted, cfg.weight, threshold, max_area)

    def _reacquire(
        self,
        model: SamI2V,
        frame: FrameFeatures,
        prompts: Optional[ObjectPrompts],
        source: str,
        stats: torch.Tensor,
        kf: BoxKalman,
        picture: Tuple[int, int],
    ) -> Optional[Candidate]:
        """A lost object: where memory finds it, then where the motion says, then where it
        was last seen."""
        cfg = self.config
        kf.predict()
        max_area = cfg.max_growth * box_area(kf.reference_box())
        if prompts is not None and source == "memory":
            cands = self.candidates(model, frame, prompts, stats)
            chosen = choose_candidate(cands, kf.reference_box(), 0.0, 0.0, max_area, None, cfg.reacquire_score)
            if chosen is not None:
                return chosen
        scale = model.image_size / model.low_res_size[1]
        for box, region in search_boxes(kf, picture, cfg):
            prompt = torch.tensor(box[None] * scale, dtype=torch.float32, device=model.device)
            cands = self.candidates(model, frame, ObjectPrompts(boxes=prompt), stats)
            chosen = choose_candidate(cands, box, cfg.weight, 0.0, max_area, region, cfg.reacquire_score)
            if chosen is not None:
                return chosen
        return None
