"""The synthesizer: a Perlin mask, a texture and a blend make one anomaly.

Why this module exists: it ties the mask (:mod:`.perlin`), foreground
(:mod:`.foreground`) and texture (:mod:`.textures`) stages together into the
picklable :class:`AnomalySynthesizer` that training calls per image, with the
blend formula ``x*(1-M) + (1-beta)*tex*M + beta*x*M``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdexpert.synthesis.foreground import _as_image, _check_method, foreground_mask, foreground_method_for
from rdexpert.synthesis.perlin import perlin_mask
from rdexpert.synthesis.textures import TextureSource, augment_texture

__all__ = ["blend", "SyntheticAnomaly", "AnomalySynthesizer"]


def blend(image: np.ndarray, texture: np.ndarray, mask: np.ndarray, beta: float) -> np.ndarray:
    """``x*(1-M) + (1-beta)*tex*M + beta*x*M``, clipped to [0, 1] (float32)."""
    m = np.asarray(mask, np.float32)[..., None]
    b = np.float32(beta)
    out = image * (1 - m) + (1 - b) * texture * m + b * image * m
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _disc_around_a_pixel(mask: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A disc of ``radius`` pixels centred on a random pixel of ``mask`` (so mask * disc is never empty)."""
    ys, xs = np.nonzero(mask)
    k = int(rng.integers(len(ys)))
    yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
    return ((yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= max(radius, 1.0) ** 2).astype(np.float32)


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
        mask_rotation: str = "reflect",
        max_extent: float | None = None,
    ):
        _check_method(foreground)
        self.textures = textures if isinstance(textures, TextureSource) else TextureSource(textures)
        self.foreground = foreground
        self.beta_range = (float(beta_range[0]), float(beta_range[1]))
        self.threshold = float(threshold)
        self.augment_textures = bool(augment_textures)
        self.max_tries = int(max_tries)
        self.mask_rotation = mask_rotation  # rdexpert.synthesis.perlin.MASK_ROTATIONS
        # None: the Perlin mask as drawn; a fraction: only the part within that share of the picture's shorter
        # side from one of its pixels (a small defect, as most real ones are)
        self.max_extent = max_extent

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
            (h, w), rng, fg, threshold=self.threshold, max_tries=self.max_tries, rotation=self.mask_rotation
        )
        if self.max_extent and mask.any():
            mask = mask * _disc_around_a_pixel(mask, self.max_extent * min(h, w), rng)
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
