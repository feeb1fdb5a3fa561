"""Rendering primitives of the synthetic video generator (:mod:`i2v.data.synthetic`).

A :class:`Scene` is a textured background seen through a panning, zooming camera, plus a
depth-ordered list of textured, deforming blobs (:class:`ObjectTrack`) whose screen-space
pose and shape are precomputed for every frame. Rendering frame ``t`` is a pure, vectorised
function of ``(scene, t)``: paint the background, paint each blob back to front inside its
bounding box, apply the lighting of frame ``t``. A label map records which object painted each
pixel last; there is no anti-aliasing, so every pixel has exactly one painter and the masks
derived from the label map are exact by construction.

Coordinates: screen pixels with pixel ``(row, col)`` centred at ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

STRIPES, CHECKER, NOISE, RINGS, GRADIENT = range(5)
NUM_PATTERNS = 5
NUM_HARMONICS = 4
# Radial harmonics k = 2..5 deform the outline; k = 1 would only shift the blob off-centre.
_HARMONIC_ORDERS = np.arange(2, 2 + NUM_HARMONICS, dtype=np.float32)


@dataclass
class Texture:
    """A two-colour procedural texture: ``colour = c0 + (c1 - c0) * m(u, v)``, ``m`` in [0, 1].

    Attributes:
        pattern: one of ``STRIPES, CHECKER, NOISE, RINGS, GRADIENT``.
        colors: (2, 3) float32 RGB in [0, 1].
        freq: pattern cycles per texture unit.
        angle: orientation of stripes / checker / gradient, radians.
        noise: (G, G) float32 value-noise lattice in [0, 1] (tileable).
        noise_freq: noise lattice cells per texture unit.
        noise_weight: share of smooth noise mixed into the pattern, in [0, 1].
        octaves: 1 or 2 noise octaves (the background uses 2 for richer clutter).
    """

    pattern: int
    colors: np.ndarray
    freq: float
    angle: float
    noise: np.ndarray
    noise_freq: float
    noise_weight: float
    octaves: int = 1


@dataclass
class ObjectTrack:
    """One blob's appearance and its per-frame screen-space pose and shape.

    The outline in the blob's own rotated frame ``(u, v)`` is the superellipse
    ``(|u/a|^n + |v/b|^n)^(1/n) <= 1 + sum_k amp_k cos(k theta + phase_k)``, with ``a = scale``,
    ``b = aspect * scale``, ``n = exponent`` and ``theta = atan2(v, u)``.

    Attributes:
        obj_id: 1..N for annotated objects, 0 for unannotated ones (distractors, occluders).
        role: ``"target"`` (annotated), ``"distractor"`` (look-alike) or ``"occluder"``.
        depth: painting order key; larger is nearer the camera and painted later.
        center: (T, 2) float32 screen (x, y) of the blob centre.
        scale: (T,) float32 semi-axis ``a`` in screen pixels.
        angle: (T,) float32 rotation, radians.
        harm_amp: (T, NUM_HARMONICS) float32 harmonic amplitudes (sum of abs < 1).
        harm_phase: (T, NUM_HARMONICS) float32 harmonic phases, radians.
        aspect: ``b / a``.
        exponent: superellipse exponent ``n`` (2 = ellipse, larger = boxier, < 2 = pointier).
        texture: appearance, evaluated in blob coordinates scaled by ``a`` so it moves, turns
            and grows with the blob.
        shading: darkening towards the rim (fake 3-D), in [0, 1).
    """

    obj_id: int
    role: str
    depth: float
    center: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    harm_amp: np.ndarray
    harm_phase: np.ndarray
    aspect: float
    exponent: float
    texture: Texture
    shading: float

    def outer_radius(self) -> np.ndarray:
        """(T,) radius of a disc that contains the blob on every frame (exact upper bound)."""
        # The superellipse with semi-axes (a, b) lies inside the one with (M, M), M = max(a, b),
        # whose farthest point is M * 2^(1/2 - 1/n) away when n > 2 (the corner) else M.
        corner = max(1.0, 2.0 ** (0.5 - 1.0 / self.exponent))
        amp = np.abs(self.harm_amp).sum(axis=1)
        return self.scale * max(1.0, self.aspect) * corner * (1.0 + amp)

    def radius_range(self, t: int, num: int = 720) -> Tuple[float, float]:
        """(min, max) distance from the centre to the outline on frame ``t``, sampled at ``num``
        angles (close to, not a bound on, the exact extremes)."""
        theta = np.linspace(0.0, 2.0 * math.pi, num, endpoint=False)
        n = self.exponent
        level = (np.abs(np.cos(theta)) ** n + np.abs(np.sin(theta) / self.aspect) ** n) ** (1.0 / n)
        outline = 1.0 + np.cos(theta[:, None] * _HARMONIC_ORDERS + self.harm_phase[t]) @ self.harm_amp[t]
        r = float(self.scale[t]) * outline / level
        return float(r.min()), float(r.max())

    def inner_radius(self) -> np.ndarray:
        """(T,) radius of a centred disc the blob always covers (exact lower bound)."""
        corner = min(1.0, 2.0 ** (0.5 - 1.0 / self.exponent))
        amp = np.abs(self.harm_amp).sum(axis=1)
        return self.scale * min(1.0, self.aspect) * corner * np.maximum(1.0 - amp, 0.0)


@dataclass
class Scene:
    """Everything needed to render any frame of one synthetic video.

    Attributes:
        height, width: frame size in pixels.
        background: background texture, evaluated in world coordinates / ``bg_unit``.
        bg_unit: world pixels per background texture unit.
        pan: (T, 2) world point at the screen centre; the camera maps
            ``screen = (world - pan[t]) * zoom[t] + (width / 2, height / 2)``.
        zoom: (T,) camera zoom factor.
        brightness: (T,) additive brightness offset (fraction of full scale).
        contrast: (T,) contrast factor around mid-grey.
        gain: (T, 3) per-channel colour gain (white-balance drift).
        light_grad: (T, 2) horizontal / vertical illumination gradient across the frame.
        objects: blobs sorted back to front.
        noise_std: sensor noise standard deviation in uint8 levels.
        noise_seed: seeds the per-frame sensor noise as ``default_rng([noise_seed, t])``.
    """

    height: int
    width: int
    background: Texture
    bg_unit: float
    pan: np.ndarray
    zoom: np.ndarray
    brightness: np.ndarray
    contrast: np.ndarray
    gain: np.ndarray
    light_grad: np.ndarray
    objects: List[ObjectTrack]
    noise_std: float
    noise_seed: int

    @property
    def num_frames(self) -> int:
        return int(self.zoom.shape[0])


def _lattice_weights(x: np.ndarray, g: int) -> np.ndarray:
    """(len(x), g) matrix whose row i smoothly interpolates a period-``g`` lattice at ``x[i]``."""
    xf = np.floor(x)
    f = x - xf
    f = f * f * (3.0 - 2.0 * f)  # smoothstep: C1-continuous across lattice cells
    i0 = xf.astype(np.int64) % g
    rows = np.arange(x.shape[0])
    w = np.zeros((x.shape[0], g), dtype=np.float32)
    w[rows, i0] = 1.0 - f
    w[rows, (i0 + 1) % g] += f  # += keeps g == 1 right
    return w


def value_noise(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth, tileable value noise sampled at lattice coordinates ``(x, y)``.

    Args:
        grid: (G, G) lattice values in [0, 1].
        x, y: float arrays of one shape, or a (1, W) row ``x`` and an (H, 1) column ``y``
            (a separable grid of points, e.g. a camera with no rotation).

    Returns:
        Noise in [0, 1], shaped like ``x`` (or (H, W)).
    """
    g = grid.shape[0]
    if x.ndim == 2 and y.ndim == 2 and x.shape[0] == 1 and y.shape[1] == 1:
        # Bilinear interpolation on a separable grid is two small matrix products, ~50x
        # cheaper than four gathers over every pixel.
        return _lattice_weights(y[:, 0], g) @ grid @ _lattice_weights(x[0], g).T
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = fy * fy * (3.0 - 2.0 * fy)
    ix0, iy0 = xf.astype(np.int64) % g, yf.astype(np.int64) % g
    ix1, iy1 = (ix0 + 1) % g, (iy0 + 1) % g
    a, b = grid[iy0, ix0], grid[iy0, ix1]
    c, d = grid[iy1, ix0], grid[iy1, ix1]
    top = a + (b - a) * fx
    bottom = c + (d - c) * fx
    return top + (bottom - top) * fy


def texture_value(tex: Texture, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pattern intensity ``m`` in [0, 1] at texture coordinates ``(u, v)`` (broadcastable)."""
    ca, sa = math.cos(tex.angle), math.sin(tex.angle)
    s = u * ca + v * sa
    two_pi_f = np.float32(2.0 * math.pi * tex.freq)
    if tex.pattern == STRIPES:
        m = 0.5 + 0.5 * np.sin(two_pi_f * s)
    elif tex.pattern == CHECKER:
        r = v * ca - u * sa
        half_f = np.float32(math.pi * tex.freq)
        # Cell parity via the sign of two sines: much faster than floor and float modulo.
        m = (np.sin(half_f * s) * np.sin(half_f * r) > 0).astype(np.float32)
    elif tex.pattern == RINGS:
        m = 0.5 + 0.5 * np.cos(two_pi_f * np.sqrt(u * u + v * v))
    elif tex.pattern == GRADIENT:
        m = 0.5 + 0.5 * np.tanh(np.float32(tex.freq) * s)
    else:
        m = value_noise(tex.noise, u * tex.freq, v * tex.freq)
    if tex.noise_weight > 0.0:
        nf = tex.noise_freq
        n = value_noise(tex.noise, u * nf, v * nf)
        if tex.octaves > 1:
            # A shifted, finer copy of the same lattice adds detail without a second grid.
            n = 0.65 * n + 0.35 * value_noise(tex.noise, u * (2.7 * nf) + 7.3, v * (2.7 * nf) + 3.1)
        m = m * (1.0 - tex.noise_weight) + n * tex.noise_weight
    return m


def colorize(tex: Texture, m: np.ndarray) -> np.ndarray:
    """Map intensities ``m`` (any shape S) to channel-first RGB: returns (3,) + S float32."""
    # Channel-first everywhere: numpy broadcasting over a trailing axis of 3 runs ~10x slower.
    c0 = tex.colors[0].reshape((3,) + (1,) * m.ndim)
    c1 = tex.colors[1].reshape((3,) + (1,) * m.ndim)
    return c0 + (c1 - c0) * np.asarray(m, dtype=np.float32)[None]


def blob_inside(
    obj: ObjectTrack, t: int, x0: int, x1: int, y0: int, y1: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise blob ``obj`` on frame ``t`` over the pixel box ``[y0, y1) x [x0, x1)``.

    Returns:
        inside: (y1 - y0, x1 - x0) bool, pixel centres inside the outline.
        u, v: same shape, blob-frame coordinates in units of the semi-axis ``a``.
        rim: same shape, 0 at the centre and 1 on the outline (for shading).
    """
    cx, cy = float(obj.center[t, 0]), float(obj.center[t, 1])
    dx = (np.arange(x0, x1, dtype=np.float32) + (0.5 - cx))[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) + (0.5 - cy))[:, None]
    ang = float(obj.angle[t])
    ca, sa = np.float32(math.cos(ang)), np.float32(math.sin(ang))
    a = np.float32(obj.scale[t])
    u = (dx * ca + dy * sa) / a
    v = (dy * ca - dx * sa) / a
    n = obj.exponent
    level = (np.abs(u) ** n + np.abs(v / np.float32(obj.aspect)) ** n) ** (1.0 / n)
    theta = np.arctan2(v, u)
    outline = np.ones_like(theta)
    for k, amp, phase in zip(_HARMONIC_ORDERS, obj.harm_amp[t], obj.harm_phase[t]):
        outline += amp * np.cos(k * theta + phase)
    inside = level <= outline
    return inside, u, v, level / outline


def paint_blob(img: np.ndarray, label: np.ndarray, obj: ObjectTrack, t: int) -> None:
    """Paint blob ``obj`` of frame ``t`` into ``img`` (3, H, W) float32 and ``label`` (H, W)."""
    h, w = label.shape
    cx, cy = float(obj.center[t, 0]), float(obj.center[t, 1])
    r = float(obj.outer_radius()[t]) + 1.0
    x0, x1 = max(0, int(math.floor(cx - r))), min(w, int(math.ceil(cx + r)) + 1)
    y0, y1 = max(0, int(math.floor(cy - r))), min(h, int(math.ceil(cy + r)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    inside, u, v, rim = blob_inside(obj, t, x0, x1, y0, y1)
    if not inside.any():
        return
    # Texture only the pixels that will be painted: typically ~60% of the bounding box.
    col = colorize(obj.texture, texture_value(obj.texture, u[inside], v[inside]))
    col *= 1.0 - obj.shading * rim[inside] ** 2
    img[:, y0:y1, x0:x1][:, inside] = col
    label[y0:y1, x0:x1][inside] = obj.obj_id


def blob_area(obj: ObjectTrack, t: int) -> int:
    """Number of pixels blob ``obj`` would cover on frame ``t`` on an unbounded canvas."""
    cx, cy = float(obj.center[t, 0]), float(obj.center[t, 1])
    r = float(obj.outer_radius()[t]) + 1.0
    x0, y0 = int(math.floor(cx - r)), int(math.floor(cy - r))
    x1, y1 = int(math.ceil(cx + r)) + 1, int(math.ceil(cy + r)) + 1
    return int(blob_inside(obj, t, x0, x1, y0, y1)[0].sum())


def render_background(scene: Scene, t: int) -> np.ndarray:
    """Background of frame ``t`` seen through the camera: (3, H, W) float32 in [0, 1]."""
    h, w = scene.height, scene.width
    z = float(scene.zoom[t])
    # Pan + zoom keep world x a function of the column only (and y of the row), so texture
    # coordinates are two 1-D vectors broadcast against each other.
    xs = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) / z + scene.pan[t, 0]) / scene.bg_unit
    ys = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / z + scene.pan[t, 1]) / scene.bg_unit
    m = texture_value(scene.background, xs[None, :], ys[:, None])
    return colorize(scene.background, np.broadcast_to(m, (h, w)))


def apply_lighting(scene: Scene, t: int, img: np.ndarray) -> np.ndarray:
    """Apply frame ``t``'s lighting and sensor noise to ``img`` (3, H, W) float32 (modified in
    place); returns the (H, W, 3) uint8 frame."""
    h, w = scene.height, scene.width
    gx, gy = float(scene.light_grad[t, 0]), float(scene.light_grad[t, 1])
    shade = (1.0 + gx * np.linspace(-1.0, 1.0, w, dtype=np.float32))[None, :] + (
        gy * np.linspace(-1.0, 1.0, h, dtype=np.float32)
    )[:, None]
    img -= 0.5
    img *= np.float32(scene.contrast[t])
    img += np.float32(0.5 + scene.brightness[t])
    img *= shade
    img *= (scene.gain[t] * 255.0).astype(np.float32)[:, None, None]
    if scene.noise_std > 0.0:
        # Triangular noise from two uint8 draws: 15x cheaper than standard_normal, and sensor
        # noise needs no exact shape. (a + b - 255) has standard deviation 104.5.
        rng = np.random.default_rng([scene.noise_seed, t])
        a = rng.integers(0, 256, img.shape, dtype=np.uint8).astype(np.int16)
        a += rng.integers(0, 256, img.shape, dtype=np.uint8)
        a -= 255
        img += a * np.float32(scene.noise_std / 104.5)
    np.clip(img, 0.0, 255.0, out=img)
    img += 0.5
    return np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))


def render_frame(scene: Scene, t: int) -> Tuple[np.ndarray, np.ndarray]:
    """Render frame ``t`` of ``scene``.

    Returns:
        frame: (H, W, 3) uint8 RGB.
        label: (H, W) int16; the ``obj_id`` of the blob painted last at each pixel, 0 where the
            background or an unannotated blob shows.
    """
    img = render_background(scene, t)
    label = np.zeros((scene.height, scene.width), dtype=np.int16)
    for obj in scene.objects:
        paint_blob(img, label, obj, t)
    return apply_lighting(scene, t, img), label
