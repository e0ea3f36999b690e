"""Conversion of fitted RGB images and masks to the float32 tensors the model takes.

Why this module exists: it is the only step of reading an image that needs
torch. Images become ``3 x S x S`` RGB tensors in ``[0, 1]`` (ImageNet
normalisation is done later by the model, never here); masks become
``1 x S x S`` tensors in ``{0, 1}``.
"""
from __future__ import annotations

import numpy as np
import torch

from rdexpert.data.images.fit import fit_image, fit_mask

__all__ = ["image_to_tensor", "mask_to_tensor"]


def image_to_tensor(image: np.ndarray, size: int | None = None, fit: str | None = None) -> "torch.Tensor":
    """``H x W x 3`` uint8 RGB -> float32 tensor ``3 x S x S`` in [0, 1] (fitted to ``size`` when given: then ``fit``,
    the model's ``input_fit``, must be given too; there is no default that could silently squash a padded model)."""
    if size is not None:
        image = fit_image(image, size, fit)
    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
    return t.float().div_(255.0).contiguous()


def mask_to_tensor(mask: np.ndarray, size: int | None = None, fit: str | None = None) -> "torch.Tensor":
    """``H x W`` bool mask -> float32 tensor ``1 x S x S`` in {0, 1} (fitted to ``size`` with ``fit`` when given)."""
    if size is not None:
        mask = fit_mask(mask, size, fit)
    return torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))[None]
