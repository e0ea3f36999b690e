"""Anomaly-source textures: the ``tex`` blended into a synthetic anomaly.

Why this module exists: the *what* of a synthetic anomaly is drawn from a
texture folder (e.g. DTD) or, without one, made procedurally, then lightly
jittered; this module holds those sources and knows nothing of masks or
blending.  Textures are float32 ``HxWx3`` RGB arrays in [0, 1].
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from rdexpert.synthesis.perlin import _fractal_noise

__all__ = ["IMAGE_EXTENSIONS", "procedural_texture", "augment_texture", "TextureSource"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


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
