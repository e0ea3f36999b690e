"""Perlin noise and the binary anomaly masks made from it.

Why this module exists: the *where* of a synthetic anomaly (the mask ``M`` of
docs/design.md §3.1) is independent of the *what* (the texture) and of how the
object's foreground is found; this module only draws masks, given an optional
foreground mask, from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["perlin_noise", "perlin_mask"]


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)  # 6t^5 - 15t^4 + 10t^3


def perlin_noise(
    shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """2-D gradient (Perlin) noise of ``shape`` with ``res`` lattice cells per axis.

    Random unit gradients sit on a ``(res[0]+1) x (res[1]+1)`` lattice; each
    cell spans ``ceil(shape[i] / res[i])`` pixels, i.e. the noise is generated
    on the size rounded up to a multiple of the period and cropped to
    ``shape``.  The value is exactly 0 on lattice points and lies within
    ``[-sqrt(1/2), sqrt(1/2)]``.  Returns float32 ``HxW``.
    """
    h, w = int(shape[0]), int(shape[1])
    ry, rx = int(res[0]), int(res[1])
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if ry < 1 or rx < 1:
        raise ValueError(f"res must be >= 1, got {res}")
    cell_y, cell_x = -(-h // ry), -(-w // rx)  # ceil: period in pixels

    y = np.arange(h) / cell_y  # lattice coordinates
    x = np.arange(w) / cell_x
    iy, ix = y.astype(np.int64), x.astype(np.int64)
    fy = (y - iy).astype(np.float32)[:, None]
    fx = (x - ix).astype(np.float32)[None, :]

    angles = rng.uniform(0.0, 2.0 * np.pi, size=(ry + 1, rx + 1))
    gy = np.cos(angles).astype(np.float32)  # unit gradients (y, x components)
    gx = np.sin(angles).astype(np.float32)

    def corner(dy: int, dx: int) -> np.ndarray:
        r, c = iy + dy, ix + dx
        return gy[r][:, c] * (fy - dy) + gx[r][:, c] * (fx - dx)

    u, v = _fade(fy), _fade(fx)
    n00, n01 = corner(0, 0), corner(0, 1)
    n0 = n00 + u * (corner(1, 0) - n00)
    n1 = n01 + u * (corner(1, 1) - n01)
    return (n0 + v * (n1 - n0)).astype(np.float32, copy=False)


def _fractal_noise(
    shape: tuple[int, int], base: int, octaves: int, rng: np.random.Generator
) -> np.ndarray:
    noise = np.zeros(shape, np.float32)
    amp = 1.0
    for o in range(octaves):
        r = min(base * 2**o, max(1, min(shape) // 2))
        noise += amp * perlin_noise(shape, (r, r), rng)
        amp *= 0.5
    return noise


MASK_ROTATIONS = ("reflect", "zero_fill")


def _rotate(img: np.ndarray, angle: float, border: str = "reflect") -> np.ndarray:
    """Rotate about the centre; corners outside the source are reflected, or zero ("zero_fill",
    imgaug's default that the released code uses: no defect can start in a corner)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), 1.0)
    mode = cv2.BORDER_CONSTANT if border == "zero_fill" else cv2.BORDER_REFLECT_101
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=0.0)


def _random_ellipse(
    shape: tuple[int, int], fg: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A small filled ellipse centred on a random foreground pixel (∩ foreground)."""
    h, w = shape
    ys, xs = np.nonzero(fg)
    k = int(rng.integers(len(ys)))
    side = min(h, w)
    lo, hi = max(1, side // 24), max(2, side // 8)
    axes = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
    angle = float(rng.uniform(0.0, 180.0))
    canvas = np.zeros((h, w), np.uint8)
    cv2.ellipse(canvas, (int(xs[k]), int(ys[k])), axes, angle, 0.0, 360.0, 1, -1)
    canvas[ys[k], xs[k]] = 1  # the centre is always in, so the mask is never empty
    return (canvas > 0) & fg


def _as_bool_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise ValueError(f"foreground mask shape {m.shape} does not match image {tuple(shape)}")
    return m.astype(bool) if m.dtype == bool else m > 0.5


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    foreground: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    min_scale: int = 0,
    max_scale: int = 5,
    rotate: bool = True,
    max_tries: int = 20,
    rotation: str = "reflect",
) -> np.ndarray:
    """Binary Perlin anomaly mask (float32 ``HxW`` in {0, 1}), never empty.

    Noise at scale ``(2^a, 2^b)`` with ``a, b`` uniform in
    ``{min_scale..max_scale}`` (clamped so a cell is at least 2 px), rotated
    by ``U(-90, 90)`` degrees about the centre (reflected border, no empty
    corners), then thresholded.  As in DRAEM's reference code the noise is
    scaled by sqrt(2) (to about [-1, 1]) before the 0.5 threshold.  The mask
    is intersected with ``foreground`` (bool ``HxW``; None or an empty mask
    means the whole image); empty results are redrawn up to ``max_tries``
    times, after which a small random ellipse inside the foreground is used.

    ``rotation="zero_fill"`` is the released code's behaviour instead: zero outside the
    rotated noise, and the first draw is kept even when it is empty (a "defect-free"
    synthetic image, about 4 % of draws).
    """
    if rotation not in MASK_ROTATIONS:
        raise ValueError(f"unknown mask rotation {rotation!r}; choose one of {MASK_ROTATIONS}")
    h, w = int(shape[0]), int(shape[1])
    if foreground is None:
        fg = np.ones((h, w), bool)
    else:
        fg = _as_bool_mask(foreground, (h, w))
        if not fg.any():
            fg = np.ones((h, w), bool)
    for _ in range(max(0, int(max_tries))):
        a, b = rng.integers(min_scale, max_scale + 1, size=2)
        res = (min(2 ** int(a), max(1, h // 2)), min(2 ** int(b), max(1, w // 2)))
        noise = perlin_noise((h, w), res, rng)
        if rotate:
            noise = _rotate(noise, rng.uniform(-90.0, 90.0), rotation)
        mask = (math.sqrt(2.0) * noise > threshold) & fg
        if mask.any() or rotation == "zero_fill":
            return mask.astype(np.float32)
    return _random_ellipse((h, w), fg, rng).astype(np.float32)
