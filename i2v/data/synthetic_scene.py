"""Scene sampling of the synthetic video generator (:mod:`i2v.data.synthetic`).

One ``np.random.Generator`` draws everything about a video: background, camera path, lighting
drift, the objects' tracks, and the scripted events that make tracking hard (full occlusions,
exits and returns, look-alike distractors). Rendering lives in
:mod:`i2v.data.synthetic_shapes`; the public API in :mod:`i2v.data.synthetic`.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from i2v.data.synthetic_shapes import (
    NUM_HARMONICS,
    NUM_PATTERNS,
    ObjectTrack,
    Scene,
    Texture,
    blob_area,
    blob_inside,
    render_frame,
)

if TYPE_CHECKING:  # the config lives with the public API, which imports this module
    from i2v.data.synthetic import SyntheticConfig


@dataclass(frozen=True)
class SceneEvent:
    """A scripted difficulty in one video.

    Attributes:
        kind: ``"occlusion"`` or ``"exit"`` (the object is invisible, its mask empty, on frames
            ``[start, end)``), or ``"distractor"`` (a look-alike is held next to the object, or
            next to where it vanished, on frames ``[start, end)``).
        obj_id: the annotated object concerned.
        start, end: the frame interval.
    """

    kind: str
    obj_id: int
    start: int
    end: int


def _drift(rng: np.random.Generator, n: int, amp: float) -> np.ndarray:
    """(n,) smooth random curve, 0 at t = 0, peak magnitude ``amp * U(0.3, 1)``."""
    t = np.arange(n, dtype=np.float64) / max(n, 1)
    g = np.zeros(n)
    for _ in range(2):
        g = g + rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(0.25, 1.0) * t + rng.uniform(0, 2 * np.pi))
    g = g - g[0]
    peak = np.abs(g).max()
    scale = amp * rng.uniform(0.3, 1.0) / peak if peak > 1e-9 else 0.0
    return (g * scale).astype(np.float32)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), dtype=np.float32)


def _texture(rng: np.random.Generator, background: bool, avoid: Optional[np.ndarray], min_dist: float) -> Texture:
    """Random texture; an object's mean colour keeps ``min_dist`` from ``avoid`` (RGB)."""
    for _ in range(20):
        h, v = rng.uniform(), rng.uniform(0.3, 0.95)
        s = rng.uniform(0.1, 0.6) if background else rng.uniform(0.35, 1.0)
        # Second colour: a nearby hue, clearly lighter or darker, so the texture shows but still
        # reads as one material.
        contrast = rng.uniform(0.35, 0.65) if rng.random() < 0.5 else rng.uniform(1.4, 2.0)
        c = np.stack([_hsv(h, s, v), _hsv(h + rng.normal(0, 0.1), s * rng.uniform(0.6, 1.2), v * contrast)])
        if avoid is None or np.linalg.norm(c.mean(0) - avoid) >= min_dist:
            break
    return Texture(
        pattern=int(rng.integers(NUM_PATTERNS)),
        colors=c,
        freq=float(rng.uniform(0.4, 1.5) if background else rng.uniform(0.8, 2.5)),
        angle=float(rng.uniform(0, np.pi)),
        noise=rng.uniform(0.0, 1.0, (16, 16)).astype(np.float32),
        noise_freq=float(rng.uniform(0.5, 2.0) if background else rng.uniform(1.0, 3.0)),
        noise_weight=float(rng.uniform(0.3, 0.7) if background else rng.uniform(0.1, 0.4)),
        octaves=2 if background else 1,
    )


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect ``x`` into [lo, hi], i.e. bounce off the walls."""
    if hi <= lo:
        return np.full_like(x, (lo + hi) / 2)
    period = 2 * (hi - lo)
    y = np.mod(x - lo, period)
    return np.where(y > hi - lo, period - y, y) + lo


def _window(n: int, start: int, ramp_in: int, hidden: int, ramp_out: int) -> np.ndarray:
    """(n,) blend weight: 0 before ``start``, eases to 1 over ``ramp_in`` frames, holds 1 for
    ``hidden`` frames, eases back to 0 over ``ramp_out`` frames."""
    t = np.arange(n, dtype=np.float32)
    end = start + ramp_in + hidden - 1 + ramp_out
    w = np.clip(np.minimum((t - start) / ramp_in, (end - t) / ramp_out), 0.0, 1.0)
    return w * w * (3.0 - 2.0 * w)


class _SceneBuilder:
    """Samples one scene; ``level`` > 0 drops difficulties when frame 0 keeps failing."""

    def __init__(self, rng: np.random.Generator, cfg: "SyntheticConfig", level: int) -> None:
        self.rng, self.cfg, self.level = rng, cfg, level
        self.n, self.h, self.w = cfg.num_frames, cfg.height, cfg.width
        self.side = float(min(cfg.height, cfg.width))
        t = np.arange(self.n, dtype=np.float32)[:, None]
        drift_pan = np.stack([_drift(rng, self.n, 3 * cfg.camera_pan * self.side) for _ in range(2)], 1)
        pan_speed = rng.uniform(-1, 1, 2) * cfg.camera_pan * self.side
        self.pan = (np.array([self.w / 2, self.h / 2]) + pan_speed * t + drift_pan).astype(np.float32)
        self.zoom = np.exp(_drift(rng, self.n, cfg.camera_zoom))
        self.background = _texture(rng, True, None, 0.0)
        self.tracks: List[ObjectTrack] = []
        self.events: List[SceneEvent] = []
        # Where each target was before it first vanished (look-alikes wait there).
        self.last_seen: Dict[int, Tuple[int, int, np.ndarray]] = {}
        # Fastest scripted approach (occluder onto target, target off screen), pixels per frame.
        self.v_max = max(0.08 * self.side, 3.0 * cfg.max_speed * self.side)
        self.failed = False

    def track(
        self, obj_id: int, role: str, texture: Texture, a0: float, aspect: float, exponent: float, deform: float
    ) -> ObjectTrack:
        """Sample a blob whose frame-0 position avoids the blobs placed so far."""
        rng, cfg, n = self.rng, self.cfg, self.n
        amps = deform * rng.uniform(0.4, 1.0) / 1.5 * rng.dirichlet(np.ones(NUM_HARMONICS))
        # Amplitudes drift by up to +-50%, so their sum stays below ``deform``.
        harm_amp = amps * (1 + 0.5 * np.stack([_drift(rng, n, 1.0) for _ in range(NUM_HARMONICS)], 1))
        harm_phase = rng.uniform(0, 2 * np.pi, NUM_HARMONICS) + np.stack(
            [_drift(rng, n, 1.5) for _ in range(NUM_HARMONICS)], 1
        )
        t = np.arange(n, dtype=np.float32)
        obj = ObjectTrack(
            obj_id=obj_id,
            role=role,
            depth=float(rng.uniform()),
            center=np.zeros((n, 2), np.float32),
            scale=(a0 * np.exp(_drift(rng, n, cfg.max_scale_change)) * self.zoom).astype(np.float32),
            angle=(rng.uniform(0, 2 * np.pi) + rng.uniform(-1, 1) * cfg.max_rotation * t + _drift(rng, n, 0.3)).astype(
                np.float32
            ),
            harm_amp=harm_amp.astype(np.float32),
            harm_phase=harm_phase.astype(np.float32),
            aspect=float(aspect),
            exponent=float(exponent),
            texture=texture,
            shading=float(rng.uniform(0.1, 0.45)),
        )
        r0 = float(obj.outer_radius()[0])
        lo, hi = np.array([r0, r0]), np.array([self.w - r0, self.h - r0])
        hi = np.maximum(hi, lo)  # an object too big to fit whole is centred
        best, best_gap = lo, -np.inf
        for _ in range(20):
            p = rng.uniform(lo, hi)
            gap = min(
                (np.linalg.norm(p - o.center[0]) - 0.8 * (r0 + o.outer_radius()[0]) for o in self.tracks),
                default=np.inf,
            )
            if gap > best_gap:
                best, best_gap = p, gap
            if gap >= 0:
                break
        speed = rng.uniform(0.3, 1.0) * cfg.max_speed * self.side
        heading = rng.uniform(0, 2 * np.pi) + _drift(rng, n, 1.2)
        step = speed * np.stack([np.cos(heading), np.sin(heading)], 1)
        world = best + np.concatenate([np.zeros((1, 2)), np.cumsum(step[:-1], 0)])
        screen = (world - self.pan) * self.zoom[:, None] + np.array([self.w / 2, self.h / 2])
        # Bounce the centre inside the frame: objects only leave it when an exit is scripted.
        margin = 0.25 * a0
        obj.center[:, 0] = _fold(screen[:, 0], margin, self.w - margin)
        obj.center[:, 1] = _fold(screen[:, 1], margin, self.h - margin)
        self.tracks.append(obj)
        return obj

    def random_track(self, obj_id: int, role: str) -> ObjectTrack:
        rng, cfg = self.rng, self.cfg
        tex = _texture(rng, False, self.background.colors.mean(0), cfg.min_color_distance)
        return self.track(
            obj_id,
            role,
            tex,
            rng.uniform(*cfg.object_size) * self.side,
            rng.uniform(0.55, 1.0),
            math.exp(rng.uniform(0.0, math.log(4.0))),
            cfg.deformation,
        )

    def plan_events(self) -> List[Tuple[str, int, int, int, int, int, int]]:
        """Place scripted events on disjoint time spans. Returns, per event, (kind, h0, h1,
        ramp_in, ramp_out, lo, hi): hidden on frames [h0, h1), eased in and out over at least
        ``ramp_in`` / ``ramp_out`` frames, with any longer ramps confined to frames [lo, hi]."""
        rng, cfg = self.rng, self.cfg
        kinds = [k for k, p in (("occlusion", cfg.occlusion_prob), ("exit", cfg.exit_prob)) if rng.random() < p]
        if self.level >= 1:
            kinds = [k for k in kinds if k == "exit"] if self.level == 1 else []
        rng.shuffle(kinds)
        spans = [
            (
                int(rng.integers(2, 5)),
                int(rng.integers(cfg.min_hidden_frames, cfg.max_hidden_frames + 1)),
                int(rng.integers(2, 5)),
            )
            for _ in kinds
        ]
        # Events start on frame 2 at the earliest and end (object fully back) by the last frame.
        while kinds and sum(sum(s) for s in spans) > self.n - 2:
            kinds.pop(), spans.pop()
        slack = max(self.n - 2 - sum(sum(s) for s in spans), 0)
        gaps = rng.multinomial(slack, np.ones(len(kinds) + 1) / (len(kinds) + 1))
        starts = 2 + np.cumsum(gaps[:-1]) + np.cumsum([0] + [sum(s) for s in spans[:-1]])
        ends = [int(st) + sum(s) - 1 for st, s in zip(starts, spans)]  # first frame fully back
        plan = []
        for i, (kind, (r_in, hidden, r_out)) in enumerate(zip(kinds, spans)):
            h0 = int(starts[i]) + r_in
            lo = ends[i - 1] if i > 0 else 0
            hi = int(starts[i + 1]) if i + 1 < len(kinds) else self.n - 1
            plan.append((kind, h0, h0 + hidden, r_in, r_out, lo, hi))
        return plan

    def approach(
        self, mover: np.ndarray, goal: np.ndarray, h0: int, h1: int, ramp_in: int, ramp_out: int, lo: int, hi: int
    ) -> np.ndarray:
        """(T,) blend weight taking ``mover`` (T, 2) onto ``goal`` (T, 2) for frames [h0, h1),
        with ramps long enough to keep the speed near ``v_max`` but within frames [lo, hi]."""
        d_in = float(np.linalg.norm(mover[h0] - goal[h0]))
        d_out = float(np.linalg.norm(mover[h1 - 1] - goal[h1 - 1]))
        # Smoothstep peaks at 1.5x its mean slope, hence the 1.5.
        r_in = int(np.clip(math.ceil(1.5 * d_in / self.v_max), ramp_in, max(h0 - lo, 1)))
        r_out = int(np.clip(math.ceil(1.5 * d_out / self.v_max), ramp_out, max(hi - h1 + 1, 1)))
        return _window(self.n, h0 - r_in, r_in, h1 - h0, r_out)

    def exit(self, obj: ObjectTrack, *window: int) -> None:
        h0 = window[0]
        x, y = obj.center[h0]
        edge = int(np.argmin([x, self.w - x, y, self.h - y]))
        out = obj.outer_radius() + 2.0
        off = obj.center.copy()
        off[:, edge // 2] = -out if edge % 2 == 0 else (self.w, self.h)[edge // 2] + out
        w = self.approach(obj.center, off, *window)[:, None]
        obj.center = (obj.center * (1 - w) + off * w).astype(np.float32)

    def occlusion(self, target: ObjectTrack, *window: int) -> None:
        rng = self.rng
        h0, h1 = window[0], window[1]
        others = [o for o in self.tracks if o.role == "target" and o is not target]
        if others and rng.random() < 0.5:
            # The nearest other object makes the most natural occluder.
            occ = min(others, key=lambda o: float(np.linalg.norm(o.center[h0] - target.center[h0])))
            occ.aspect, occ.exponent = max(occ.aspect, 0.8), max(occ.exponent, 2.0)
        else:
            occ = self.random_track(0, "occluder")
            occ.aspect, occ.exponent = float(rng.uniform(0.8, 1.0)), float(rng.uniform(2.0, 4.0))
        # A near-round, low-wobble occluder has a large inscribed disc to cover the target with.
        occ.harm_amp *= min(1.0, 0.08 / max(float(np.abs(occ.harm_amp).sum(1).max()), 1e-6))
        occ.depth = 1.0 + float(rng.uniform())
        w = self.approach(occ.center, target.center, *window)
        occ.center = (occ.center * (1 - w[:, None]) + target.center * w[:, None]).astype(np.float32)
        # The occluder swells while it covers the target (as if it came nearer the camera), just
        # enough that its inscribed outline contains the target's on every hidden frame.
        grow = max(1.0, max(target.radius_range(t)[1] / occ.radius_range(t)[0] for t in range(h0, h1)))
        base = occ.scale.copy()
        for _ in range(50):
            occ.scale = (base * (1.0 + (grow - 1.0) * w)).astype(np.float32)
            if all(_covers(occ, target, t) for t in range(h0, h1)):
                return
            grow *= 1.04
        self.failed = True  # never seen; the scene is resampled rather than mislabel the event

    def distractor(self, target: ObjectTrack) -> None:
        """A look-alike of ``target`` that comes next to it, or next to where it vanished."""
        rng, n = self.rng, self.n
        tex = target.texture
        look = Texture(
            tex.pattern,
            np.clip(tex.colors + rng.normal(0, 0.05, (1, 3)), 0, 1).astype(np.float32),
            tex.freq * rng.uniform(0.8, 1.25),
            tex.angle + rng.normal(0, 0.3),
            tex.noise,
            tex.noise_freq,
            tex.noise_weight,
        )
        obj = self.track(
            0,
            "distractor",
            look,
            float(target.scale[0] / self.zoom[0]) * rng.uniform(0.85, 1.15),
            float(np.clip(target.aspect + rng.normal(0, 0.1), 0.5, 1.0)),
            target.exponent * rng.uniform(0.8, 1.25),
            self.cfg.deformation,
        )
        if target.obj_id in self.last_seen:
            h0, h1, seen = self.last_seen[target.obj_id]
            anchor = np.broadcast_to(seen, target.center.shape)
        else:
            h0 = int(rng.integers(4, n - 2)) if n > 6 else min(1, n - 1)
            h1 = min(h0 + int(rng.integers(2, 5)), n)
            anchor = target.center
        ang = rng.uniform(0, 2 * np.pi)
        # Centres closer than the sum of semi-axes: the two touch or overlap a little.
        dist = rng.uniform(0.7, 1.05) * (target.scale + obj.scale)[:, None]
        near = anchor + dist * np.array([math.cos(ang), math.sin(ang)], np.float32)
        w = self.approach(obj.center, near, h0, h1, 2, 2, 0, n - 1)[:, None]
        obj.center = (obj.center * (1 - w) + near * w).astype(np.float32)
        self.events.append(SceneEvent("distractor", target.obj_id, max(h0, 0), min(h1, n)))

    def build(self) -> Tuple[Scene, List[SceneEvent]]:
        rng, cfg = self.rng, self.cfg
        count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1)) if self.level < 2 else 1
        targets = [self.random_track(i + 1, "target") for i in range(count)]
        for kind, *window in self.plan_events():
            obj = targets[int(rng.integers(count))]
            seen = obj.center[window[0] - window[2]].copy()  # where it was before the event began
            getattr(self, kind)(obj, *window)
            self.events.append(SceneEvent(kind, obj.obj_id, window[0], window[1]))
            self.last_seen.setdefault(obj.obj_id, (window[0], window[1], seen))
        if self.level == 0 and rng.random() < cfg.distractor_prob:
            for _ in range(int(rng.integers(1, cfg.max_distractors + 1))):
                self.distractor(targets[int(rng.integers(count))])
        lt = cfg.lighting
        scene = Scene(
            height=cfg.height,
            width=cfg.width,
            background=self.background,
            bg_unit=self.side / 4,
            pan=self.pan,
            zoom=self.zoom.astype(np.float32),
            brightness=(rng.uniform(-0.05, 0.05) + _drift(rng, self.n, 0.5 * lt)).astype(np.float32),
            contrast=np.exp(_drift(rng, self.n, lt)).astype(np.float32),
            gain=np.exp(np.stack([_drift(rng, self.n, 0.4 * lt) for _ in range(3)], 1)).astype(np.float32),
            light_grad=(
                rng.uniform(-0.1, 0.1, 2) * lt / 0.2 + np.stack([_drift(rng, self.n, 0.5 * lt) for _ in range(2)], 1)
            ).astype(np.float32),
            objects=sorted(self.tracks, key=lambda o: o.depth),
            noise_std=float(cfg.noise_std),
            noise_seed=int(rng.integers(2**63)),
        )
        return scene, sorted(self.events, key=lambda e: (e.start, e.obj_id, e.kind))


def _covers(front: ObjectTrack, back: ObjectTrack, t: int) -> bool:
    """Whether ``front`` covers every pixel of ``back`` on frame ``t`` (any canvas)."""
    cx, cy = back.center[t]
    r = float(back.outer_radius()[t]) + 1.0
    box = (int(math.floor(cx - r)), int(math.ceil(cx + r)) + 1, int(math.floor(cy - r)), int(math.ceil(cy + r)) + 1)
    return not (blob_inside(back, t, *box)[0] & ~blob_inside(front, t, *box)[0]).any()


def _frame0_ok(scene: Scene) -> bool:
    """Every annotated object shows at least 60% of its area on frame 0."""
    _, label = render_frame(scene, 0)
    for obj in scene.objects:
        if obj.obj_id > 0 and (label == obj.obj_id).sum() < max(1, 0.6 * blob_area(obj, 0)):
            return False
    return True


def sample_scene(seed: int, cfg: SyntheticConfig) -> Tuple[Scene, List[SceneEvent]]:
    """Sample the scene of video ``seed`` and its scripted events (no frame is rendered except
    frame 0, to check that every annotated object is prompt-able there)."""
    rng = np.random.default_rng(seed)
    # Rejection sampling; after repeated failures, drop distractors and occluders, then all but
    # one object (a lone, uncovered object with its centre in frame always passes).
    for level in [0] * 12 + [1] * 6 + [2]:
        builder = _SceneBuilder(rng, cfg, level)
        scene, events = builder.build()
        if level == 2 or (not builder.failed and _frame0_ok(scene)):
            return scene, events
    raise AssertionError("unreachable")
