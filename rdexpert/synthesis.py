"""DRAEM-style synthetic anomalies: Perlin-noise masks filled with a texture.

Every training image ``x`` gets an augmented twin ``x_aug`` and a binary mask
``M`` (DESIGN.md §3.1)::

    x_aug = x * (1 - M) + (1 - beta) * tex * M + beta * x * M,   beta ~ U(0, 0.8)

* ``M`` is 2-D gradient Perlin noise with a random lattice of 2^a x 2^b cells
  (a, b uniform in {0..5}), rotated by a random angle in [-90, 90] degrees and
  thresholded at 0.5.  For object categories it is intersected with a
  foreground mask of the object so anomalies do not land on the background.
* ``tex`` is a texture image (e.g. DTD) resized to the image size, or a
  procedural texture when no texture folder is given.

Conventions: images are float32 ``HxWx3`` RGB arrays in [0, 1]; masks are
float32 ``HxW`` arrays in {0, 1} (foreground masks are bool ``HxW``).  All
randomness comes from the ``numpy.random.Generator`` passed in, so results are
reproducible under a seed.  Everything here is picklable, so the synthesizer
can live inside ``torch.utils.data.DataLoader`` workers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "FOREGROUND_METHODS",
    "TEXTURE_CATEGORIES",
    "DEFAULT_FOREGROUND",
    "IMAGE_EXTENSIONS",
    "perlin_noise",
    "perlin_mask",
    "foreground_mask",
    "foreground_method_for",
    "procedural_texture",
    "augment_texture",
    "blend",
    "TextureSource",
    "SyntheticAnomaly",
    "AnomalySynthesizer",
]

FOREGROUND_METHODS = ("none", "otsu", "otsu_inverse", "grabcut", "auto")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# --------------------------------------------------------------------------
# Category tables
# --------------------------------------------------------------------------

#: Categories whose images are a texture filling the frame (no foreground mask).
#: MVTec AD has five; VisA and MPDD have none.
TEXTURE_CATEGORIES = frozenset({"carpet", "grid", "leather", "tile", "wood"})

#: Foreground method for known MVTec AD / VisA / MPDD categories.  Thin dark
#: objects on a light background (screw, capsule) use inverse Otsu as in the
#: reference; bright objects on a dark background use Otsu; objects on busy
#: backgrounds use GrabCut; frame-filling objects and textures use no mask.
#: Unknown categories fall back to "auto" (see :func:`foreground_mask`).
DEFAULT_FOREGROUND: dict[str, str] = {
    # MVTec AD textures
    **{c: "none" for c in sorted(TEXTURE_CATEGORIES)},
    # MVTec AD objects
    "bottle": "none",  # bottle seen from above fills most of the frame
    "cable": "none",  # three cables fill the frame
    "capsule": "otsu_inverse",  # thin dark-printed capsule on a light background
    "hazelnut": "otsu",  # brown nut on a black background
    "metal_nut": "otsu",  # bright metal on a black background
    "pill": "otsu",  # white pill on a black background
    "screw": "otsu_inverse",  # thin dark screw on a light background
    "toothbrush": "grabcut",
    "transistor": "none",  # "misplaced" defects live on the background too
    "zipper": "none",  # zipper strip spans the whole frame
    # VisA
    "candle": "grabcut",
    "capsules": "grabcut",
    "cashew": "grabcut",
    "chewinggum": "grabcut",
    "fryum": "grabcut",
    "macaroni1": "grabcut",
    "macaroni2": "grabcut",
    "pcb1": "none",
    "pcb2": "none",
    "pcb3": "none",
    "pcb4": "none",
    "pipe_fryum": "grabcut",
    # MPDD
    "bracket_black": "otsu_inverse",
    "bracket_brown": "grabcut",
    "bracket_white": "grabcut",
    "connector": "grabcut",
    "metal_plate": "otsu_inverse",  # dark blue plate on a light grey background
    "tubes": "none",  # several tubes fill the frame
}


def foreground_method_for(category: str | None, override: str | None = None) -> str:
    """Foreground method for ``category``: ``override`` if given, else the
    :data:`DEFAULT_FOREGROUND` entry, else ``"auto"``."""
    if override is not None:
        _check_method(override)
        return override
    if category is None:
        return "auto"
    return DEFAULT_FOREGROUND.get(str(category).strip().lower(), "auto")


def _check_method(method: str) -> None:
    if method not in FOREGROUND_METHODS:
        raise ValueError(
            f"unknown foreground method {method!r}; expected one of {FOREGROUND_METHODS}"
        )


# --------------------------------------------------------------------------
# Perlin noise and masks
# --------------------------------------------------------------------------


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


def _rotate(img: np.ndarray, angle: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), 1.0)
    return cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


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
    """
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
            noise = _rotate(noise, rng.uniform(-90.0, 90.0))
        mask = (math.sqrt(2.0) * noise > threshold) & fg
        if mask.any():
            return mask.astype(np.float32)
    return _random_ellipse((h, w), fg, rng).astype(np.float32)


# --------------------------------------------------------------------------
# Foreground masks
# --------------------------------------------------------------------------


def _as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return np.clip(img.astype(np.float32, copy=False), 0.0, 1.0)


def _as_bool_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise ValueError(f"foreground mask shape {m.shape} does not match image {tuple(shape)}")
    return m.astype(bool) if m.dtype == bool else m > 0.5


def _gray_u8(img: np.ndarray) -> np.ndarray:
    u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)


def _otsu_bright(gray: np.ndarray) -> np.ndarray:
    """Pixels brighter than the Otsu threshold of a lightly blurred copy."""
    k = max(3, (min(gray.shape) // 100) | 1)
    blurred = cv2.GaussianBlur(gray, (k, k), 0)
    _, bright = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return bright > 0


def _clean(mask: np.ndarray) -> np.ndarray:
    """Morphological open (drop specks) then close (fill small gaps)."""
    k = max(3, int(round(0.02 * min(mask.shape))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    return m > 0


def _border_fraction(mask: np.ndarray) -> float:
    b = max(1, min(mask.shape) // 50)
    border = np.concatenate(
        [mask[:b].ravel(), mask[-b:].ravel(), mask[:, :b].ravel(), mask[:, -b:].ravel()]
    )
    return float(border.mean())


def _grabcut(img: np.ndarray, max_side: int = 160, iterations: int = 5) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) < 16:
        return np.ones((h, w), bool)
    scale = min(1.0, max_side / max(h, w))
    sh, sw = max(16, int(round(h * scale))), max(16, int(round(w * scale)))
    small = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    small = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
    my, mx = max(1, int(round(0.04 * sh))), max(1, int(round(0.04 * sw)))
    rect = (mx, my, sw - 2 * mx, sh - 2 * my)
    gc = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation uses OpenCV's RNG
    try:
        cv2.grabCut(small, gc, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return np.ones((h, w), bool)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST) > 0


def foreground_mask(image: np.ndarray, method: str = "auto") -> np.ndarray:
    """Bool ``HxW`` mask of the object in ``image`` (float32 RGB in [0, 1]).

    Methods:

    * ``"none"``: all True (textures).
    * ``"otsu"``: object brighter than the background.
    * ``"otsu_inverse"``: object darker than the background (thin dark objects
      such as screws and capsules).
    * ``"grabcut"``: ``cv2.grabCut`` from a rectangle 4% inside the border,
      5 iterations on a copy downscaled to 160 px, upscaled back.
    * ``"auto"``: Otsu on grayscale; the polarity whose foreground touches the
      image border least is the object; cleaned by open/close.  If it covers
      more than 85% or less than 3% of the image, or still covers more than
      25% of the border (both polarities reach the border: a pattern, not an
      object), the image is treated as a texture (all True).

    The result is never empty: an empty foreground becomes all True.
    """
    _check_method(method)
    img = _as_image(image)
    h, w = img.shape[:2]
    if method == "none":
        return np.ones((h, w), bool)
    if method == "grabcut":
        fg = _grabcut(img)
    else:
        bright = _otsu_bright(_gray_u8(img))
        if method == "otsu":
            fg = _clean(bright)
        elif method == "otsu_inverse":
            fg = _clean(~bright)
        else:  # auto
            dark = ~bright
            fb, fd = _border_fraction(bright), _border_fraction(dark)
            if fb != fd:
                fg = bright if fb < fd else dark
            else:
                fg = bright if bright.mean() <= dark.mean() else dark
            fg = _clean(fg)
            cover = float(fg.mean())
            if cover > 0.85 or cover < 0.03 or _border_fraction(fg) > 0.25:
                return np.ones((h, w), bool)
    if not fg.any():
        return np.ones((h, w), bool)
    return fg


# --------------------------------------------------------------------------
# Textures
# --------------------------------------------------------------------------


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3).astype(np.float32)


def _norm01(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def procedural_texture(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random procedural texture (float32 ``HxWx3`` in [0, 1]).

    One of: multi-octave Perlin colour noise, stripes, a checker pattern
    (random frequency, orientation and colours), or blurred colour speckle;
    plus a little pixel noise.
    """
    h, w = int(size[0]), int(size[1])
    kind = int(rng.integers(4))
    c0, c1 = _random_colour(rng), _random_colour(rng)
    if kind == 0:  # fractal Perlin noise mapped onto a random 3-colour palette
        base = int(2 ** rng.integers(0, 4))
        t = _norm01(_fractal_noise((h, w), base, 4, rng))[..., None]
        s = _norm01(_fractal_noise((h, w), base, 3, rng))[..., None]
        c2 = _random_colour(rng)
        tex = (c0 * (1 - t) + c1 * t) * (1 - 0.6 * s) + c2 * (0.6 * s)
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta = rng.uniform(0.0, np.pi)
        u = (xx * np.cos(theta) + yy * np.sin(theta)) / max(h, w)
        v = (-xx * np.sin(theta) + yy * np.cos(theta)) / max(h, w)
        freq = rng.uniform(2.0, 24.0)
        phase = rng.uniform(0.0, 2 * np.pi)
        if kind == 1:  # stripes: smooth, sharpened or hard-edged
            s = np.sin(2 * np.pi * freq * u + phase)
            sharp = rng.uniform(1.0, 10.0)
            t = 0.5 + 0.5 * np.tanh(sharp * s) / np.tanh(sharp)
        elif kind == 2:  # checker / grid
            f2 = freq * rng.uniform(0.5, 2.0)
            s = np.sin(2 * np.pi * freq * u + phase) * np.sin(2 * np.pi * f2 * v)
            t = (s > 0).astype(np.float32)
        else:  # blurred colour speckle
            t = rng.uniform(0.0, 1.0, size=(h, w)).astype(np.float32)
            sigma = rng.uniform(0.5, 4.0)
            t = _norm01(cv2.GaussianBlur(t, (0, 0), sigma))
        t = t.astype(np.float32)[..., None]
        tex = c0 * (1 - t) + c1 * t
    tex = tex + rng.normal(0.0, rng.uniform(0.0, 0.05), size=(h, w, 1))
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def augment_texture(tex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light DRAEM-like colour/geometry jitter: 0–3 random ops among gamma,
    per-channel gain, channel permutation, invert, solarize, posterize,
    autocontrast, rot90/flip."""
    out = tex
    n_ops = int(rng.integers(0, 4))
    for op in rng.choice(8, size=n_ops, replace=False):
        if op == 0:
            out = np.power(out, rng.uniform(0.5, 2.0))
        elif op == 1:
            out = out * rng.uniform(0.7, 1.3, size=3)
        elif op == 2:
            out = out[..., rng.permutation(3)]
        elif op == 3:
            out = 1.0 - out
        elif op == 4:
            out = np.where(out > 0.5, 1.0 - out, out)
        elif op == 5:
            levels = float(2 ** rng.integers(2, 5))
            out = np.floor(out * levels) / (levels - 1)
        elif op == 6:
            out = _norm01(out)
        else:
            if out.shape[0] == out.shape[1]:
                out = np.rot90(out, int(rng.integers(1, 4)))
            out = out[:, ::-1] if rng.integers(2) else out[::-1]
        out = np.clip(out, 0.0, 1.0)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def _read_rgb(path: Path) -> np.ndarray:
    """uint8 RGB image; grayscale and RGBA files become RGB."""
    data = np.fromfile(str(path), dtype=np.uint8)  # works with non-ASCII paths
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError(f"could not read texture image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class TextureSource:
    """Anomaly-source textures.

    ``folder``: a directory searched recursively for *.jpg / *.jpeg / *.png
    (e.g. DTD's ``images/<class>/*.jpg``), or None for procedural textures.
    Decoded images are kept in a small LRU cache of ``cache_size`` entries.
    """

    def __init__(self, folder: str | Path | None = None, cache_size: int = 32):
        self.cache_size = max(0, int(cache_size))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        if folder is None:
            self.folder = None
            self.files: list[Path] = []
            return
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"texture folder not found: {self.folder}")
        self.files = sorted(
            p
            for p in self.folder.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if not self.files:
            raise ValueError(
                f"texture folder {self.folder} holds no .jpg/.jpeg/.png images"
            )

    @property
    def procedural(self) -> bool:
        return self.folder is None

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        where = "procedural" if self.procedural else f"{self.folder!s}, {len(self)} images"
        return f"TextureSource({where})"

    def _load(self, idx: int) -> np.ndarray:
        img = self._cache.get(idx)
        if img is not None:
            self._cache.move_to_end(idx)
            return img
        img = _read_rgb(self.files[idx])
        if self.cache_size:
            self._cache[idx] = img
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return img

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        """A random texture resized to ``size = (H, W)``: float32 ``HxWx3`` in [0, 1]."""
        h, w = int(size[0]), int(size[1])
        if self.procedural:
            return procedural_texture((h, w), rng)
        img = self._load(int(rng.integers(len(self.files))))
        if img.shape[:2] != (h, w):
            shrink = img.shape[0] * img.shape[1] > h * w
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            img = cv2.resize(img, (w, h), interpolation=interp)
        return img.astype(np.float32) / 255.0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # don't ship cached pixels to workers
        return state


# --------------------------------------------------------------------------
# Blend and the synthesizer
# --------------------------------------------------------------------------


def blend(image: np.ndarray, texture: np.ndarray, mask: np.ndarray, beta: float) -> np.ndarray:
    """``x*(1-M) + (1-beta)*tex*M + beta*x*M``, clipped to [0, 1] (float32)."""
    m = np.asarray(mask, np.float32)[..., None]
    b = np.float32(beta)
    out = image * (1 - m) + (1 - b) * texture * m + b * image * m
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


@dataclass(eq=False)
class SyntheticAnomaly:
    image: np.ndarray  # HxWx3 float32 augmented image
    mask: np.ndarray  # HxW float32 {0,1}
    beta: float
    texture: np.ndarray | None = None  # HxWx3 float32 texture that was blended in


class AnomalySynthesizer:
    """Makes a DRAEM-style synthetic anomaly for a normal image.

    ``textures``: texture folder (e.g. ``../shared/data/dtd/images``), a
    :class:`TextureSource`, or None for procedural textures.  ``foreground``:
    the foreground method used when the caller passes no cached mask.
    """

    def __init__(
        self,
        textures: str | Path | TextureSource | None = None,
        foreground: str = "auto",
        *,
        beta_range: tuple[float, float] = (0.0, 0.8),
        threshold: float = 0.5,
        augment_textures: bool = True,
        max_tries: int = 20,
    ):
        _check_method(foreground)
        self.textures = textures if isinstance(textures, TextureSource) else TextureSource(textures)
        self.foreground = foreground
        self.beta_range = (float(beta_range[0]), float(beta_range[1]))
        self.threshold = float(threshold)
        self.augment_textures = bool(augment_textures)
        self.max_tries = int(max_tries)

    @classmethod
    def for_category(
        cls,
        category: str | None,
        textures: str | Path | TextureSource | None = None,
        foreground: str | None = None,
        **kwargs,
    ) -> "AnomalySynthesizer":
        """Synthesizer whose foreground method comes from :func:`foreground_method_for`."""
        return cls(textures, foreground_method_for(category, foreground), **kwargs)

    def foreground_mask(self, image: np.ndarray) -> np.ndarray:
        """The foreground mask this synthesizer would use (cache it per image)."""
        return foreground_mask(image, self.foreground)

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        foreground: np.ndarray | None = None,
    ) -> SyntheticAnomaly:
        x = _as_image(image)
        h, w = x.shape[:2]
        fg = foreground_mask(x, self.foreground) if foreground is None else foreground
        mask = perlin_mask(
            (h, w), rng, fg, threshold=self.threshold, max_tries=self.max_tries
        )
        tex = self.textures.sample(rng, (h, w))
        if self.augment_textures:
            tex = augment_texture(tex, rng)
        beta = float(rng.uniform(*self.beta_range))
        return SyntheticAnomaly(blend(x, tex, mask, beta), mask, beta, tex)

    def __repr__(self) -> str:
        return (
            f"AnomalySynthesizer(textures={self.textures!r}, foreground={self.foreground!r}, "
            f"beta_range={self.beta_range})"
        )
