"""Fitting an image or mask to the network's square ``S x S`` input, and where the picture lies there.

Why this module exists: fitting never crops, and it is a model choice
(``ModelConfig.input_fit``) that training, evaluation, inference and export
must apply identically. "squash" resizes to ``S x S`` (the aspect ratio is
lost); "pad" resizes the longer side to ``S`` and edge-fills the rest. Images
use (antialiased) bilinear interpolation, masks area/bilinear coverage
thresholded at 0.5. :func:`content_box` says where the picture lies in the
square; scores and pixel metrics look there only, never at the padding.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

__all__ = [
    "resize_image",
    "resize_mask",
    "INPUT_FITS",
    "ContentBox",
    "content_box",
    "pad_to_square",
    "fit_image",
    "fit_mask",
]


def _resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 image resized to ``height x width`` (bilinear, antialiased when downscaling)."""
    if image.shape[0] == height and image.shape[1] == width:
        return np.ascontiguousarray(image)
    out = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H x W x 3`` uint8 image to ``size x size`` (bilinear, antialiased, no crop)."""
    return _resize_to(image, int(size), int(size))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H x W`` bool/0-1 mask to ``size x size`` bool.

    Bilinear (antialiased, i.e. area coverage when downscaling) on the 0/1 mask,
    then ``>= 0.5``.
    """
    return fit_mask(mask, size, "squash")


#: How an image is fitted to the network's square input; the first is what the released code does.
INPUT_FITS: tuple[str, ...] = ("squash", "pad")


def _check_fit(fit: str) -> None:
    if fit not in INPUT_FITS:
        raise ValueError(f"unknown input fit {fit!r}; choose one of {INPUT_FITS}")


class ContentBox(NamedTuple):
    """Where the picture lies in the network's ``S x S`` input: ``height`` rows from ``top``, ``width`` columns
    from ``left`` (the whole square for "squash"; the rest is padding for "pad")."""

    top: int
    left: int
    height: int
    width: int

    @classmethod
    def of(cls, row) -> "ContentBox":
        """A box from a row of 4 numbers (a batch's ``box`` tensor row, a numpy row)."""
        return cls(*(int(v) for v in row))

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The content of an ``S x S`` (x C) array: its first two axes cut to the box."""
        return array[self.top : self.top + self.height, self.left : self.left + self.width]


def content_box(height: int, width: int, size: int, fit: str) -> ContentBox:
    """Where an ``height x width`` image lies once fitted to ``size x size``.

    "pad": the longer side becomes ``size``, the shorter one ``round(side * size / longer)`` (at least 1),
    centred (an odd remainder puts the extra row or column at the bottom or right).
    """
    _check_fit(fit)
    size = int(size)
    if fit == "squash" or height == width:
        return ContentBox(0, 0, size, size)
    longer = max(height, width)
    h, w = (max(1, round(side * size / longer)) for side in (height, width))
    return ContentBox((size - h) // 2, (size - w) // 2, h, w)


def pad_to_square(content: np.ndarray, size: int, fill: str = "edge") -> np.ndarray:
    """``content`` (h x w or h x w x C, sides at most ``size``) centred in ``size x size``, as :func:`content_box` does.

    ``fill="edge"`` (images) repeats the outermost row or column of the picture; ``"zero"`` (masks) fills
    with 0. Images are edge-filled rather than filled with a constant colour so that no artificial step edge
    runs along the picture's border: the stride-16 features and the blurred map (sigma 4 px) near that border
    see the picture continued, not an edge that no normal image has there, and the foreground estimate of
    the synthetic anomalies is not swayed by a block of one colour.
    """
    if fill not in ("edge", "zero"):
        raise ValueError(f"unknown fill {fill!r}; choose 'edge' or 'zero'")
    h, w = content.shape[:2]
    if h > size or w > size:
        raise ValueError(f"cannot pad a {h} x {w} picture to {size} x {size}: it is larger")
    if h == w == size:
        return np.ascontiguousarray(content)
    top, left = (size - h) // 2, (size - w) // 2
    widths = [(top, size - h - top), (left, size - w - left)] + [(0, 0)] * (content.ndim - 2)
    return np.pad(content, widths, mode="edge" if fill == "edge" else "constant")


def fit_image(image: np.ndarray, size: int, fit: str, padded: bool = True) -> np.ndarray:
    """An ``H x W x 3`` uint8 image as the network takes it, ``size x size`` (see :func:`content_box`).

    "squash" is :func:`resize_image`; "pad" keeps the aspect ratio and edge-fills the rest
    (:func:`pad_to_square`). ``padded=False`` returns the resized picture before padding
    (its box's ``height x width``), e.g. to place synthetic anomalies on the picture only.
    A square image gives the same array either way.
    """
    box = content_box(image.shape[0], image.shape[1], size, fit)
    content = _resize_to(image, box.height, box.width)
    return pad_to_square(content, int(size)) if padded else content


def fit_mask(mask: np.ndarray, size: int, fit: str, box: ContentBox | None = None) -> np.ndarray:
    """An ``H x W`` mask fitted like its image (:func:`fit_image`): ``size x size`` bool, padding False.

    ``box``: its image's content box, so that a mask stored at another resolution lands on the same pixels
    (default: the mask's own box).
    """
    m = np.asarray(mask)
    box = box or content_box(m.shape[0], m.shape[1], size, fit)
    if (box.height, box.width) == m.shape[:2]:
        content = m.astype(bool)
    else:
        f = Image.fromarray(m.astype(np.float32), mode="F").resize((box.width, box.height), Image.BILINEAR)
        content = np.asarray(f) >= 0.5
    return pad_to_square(content, int(size), fill="zero")
