"""The torch ``Dataset``s used for training and evaluation.

Why this module exists: it is the only part of :mod:`rdexpert.data` that needs
``torch.utils.data``; it joins the sample lists of :mod:`.layouts` with the
decoding and fitting of :mod:`.images`.  Both datasets share :class:`_CachedDataset`, the
one place that keeps decoded, resized images in memory per index and preloads
them.  Images are fitted to the square input as the model was trained
(``fit``: "squash" or "pad", :func:`.images.fit.fit_image`); items carry the
picture's content ``box`` so that scores and pixel metrics skip the padding.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from rdexpert.data.images.decode import load_image
from rdexpert.data.images.fit import ContentBox, _check_fit, content_box, fit_image, fit_mask, pad_to_square
from rdexpert.data.images.masks import load_mask
from rdexpert.data.images.tensors import image_to_tensor, mask_to_tensor
from rdexpert.data.layouts.samples import Sample

__all__ = ["ImageDataset", "SyntheticAnomalyDataset"]

_Self = TypeVar("_Self", bound="_CachedDataset")


class _CachedDataset(Dataset):
    """A dataset over ``samples`` whose decoded arrays are cached per index.

    Subclasses implement :meth:`_decode` (read and resize sample ``index``);
    :meth:`_load` returns its result and keeps it in memory when ``cache`` is
    true.  The cache lives per DataLoader worker; :meth:`preload` fills it once
    in the main process, and forked workers inherit it.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int, cache: bool = True, *, fit: str):
        _check_fit(fit)
        self.samples = list(samples)
        self.image_size = int(image_size)
        self.cache = bool(cache)
        self.fit = fit
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, index: int) -> Any:
        raise NotImplementedError

    def _load(self, index: int) -> Any:
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        out = self._decode(index)
        if self.cache:
            self._cache[index] = out
        return out

    def _index(self, index: int) -> int:
        """``index`` with Python's negative indexing resolved."""
        return index + len(self) if index < 0 else index

    def preload(self: _Self) -> _Self:
        for i in range(len(self)):
            self._load(i)
        return self


class ImageDataset(_CachedDataset):
    """Evaluation dataset.

    Item ``i`` is ``dict(image=3xSxS float32 in [0,1], mask=1xSxS float32 in {0,1},
    label=int, path=str, has_mask=bool, box=int64 (top, left, height, width))``: ``box`` is
    where the picture lies in the square (all of it unless ``fit="pad"``).  ``has_mask`` is False for normal
    images and for defective images without a mask (plain-folder datasets);
    pixel metrics should skip defective images with ``has_mask`` False.

    With ``cache=True`` the fitted uint8 image and bool mask are kept in memory
    per index (per DataLoader worker; call :meth:`preload` before creating the
    DataLoader to fill it once in the main process).
    """

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray, ContentBox]:
        s = self.samples[index]
        img = load_image(s.path)
        box = content_box(img.shape[0], img.shape[1], self.image_size, self.fit)
        if s.mask_path is not None:
            mask = load_mask(s.mask_path)
            if mask.shape != img.shape[:2]:
                ra, rb = mask.shape[1] / mask.shape[0], img.shape[1] / img.shape[0]
                if abs(ra - rb) > 0.01 * rb:
                    warnings.warn(
                        f"Mask '{s.mask_path}' ({mask.shape[1]}x{mask.shape[0]}) and image "
                        f"'{s.path}' ({img.shape[1]}x{img.shape[0]}) have different aspect ratios; "
                        f"the mask is stretched onto the image's {box.width}x{box.height} pixels.",
                        stacklevel=3,
                    )
            mask = fit_mask(mask, self.image_size, self.fit, box)
        else:
            mask = np.zeros((self.image_size, self.image_size), dtype=bool)
        return fit_image(img, self.image_size, self.fit), mask, box

    def __getitem__(self, index: int) -> dict:
        index = self._index(index)
        img, mask, box = self._load(index)
        s = self.samples[index]
        return {
            "image": image_to_tensor(img),
            "mask": mask_to_tensor(mask),
            "label": int(s.label),
            "path": str(s.path),
            "has_mask": s.mask_path is not None,
            "box": torch.tensor(box, dtype=torch.int64),
        }


class SyntheticAnomalyDataset(_CachedDataset):
    """Training dataset: normal images plus a synthetic anomaly version.

    Item ``i`` is ``dict(image=3xSxS (normal), augmented=3xSxS (with synthetic
    anomaly), mask=1xSxS (synthetic anomaly mask), label=int (1 when the mask is
    non-empty), path=str, box=int64 (top, left, height, width))``.

    ``fit="pad"``: the anomaly is made on the picture at model scale (the box's ``height x width``), and
    then clean image, anomaly and mask are padded like :func:`.images.fit.fit_image` (mask with 0), so that
    no synthetic defect ever lies in the padding and the padding of an image with a defect at its border
    repeats that defect, as a real one's would.

    ``synthesizer(image_HxWx3_float32_0_1, rng, foreground) -> obj`` with
    ``.image`` (HxWx3 float32) and ``.mask`` (HxW float32); None builds
    ``rdexpert.synthesis.AnomalySynthesizer()``.

    ``foreground_method`` chooses the foreground mask handed to the synthesizer
    (computed once per image on the resized float picture, unpadded, then cached):

    * None (default): the synthesizer's own method, ``synthesizer.foreground_mask(image)``
      when it has that method (e.g. ``AnomalySynthesizer.for_category(...)``),
      else ``rdexpert.synthesis.foreground_mask(image, "auto")``;
    * a method name (``"auto"``, ``"otsu"``, ``"otsu_inverse"``, ``"grabcut"``,
      ``"none"``): ``rdexpert.synthesis.foreground_mask(image, method)``;
    * a callable ``f(image_HxWx3_float32) -> bool HxW``;
    * False: pass ``foreground=None`` (the synthesizer decides, on every call).

    Determinism: the rng of item ``i`` is ``np.random.default_rng([seed, epoch, i])``;
    ``epoch`` is set by :meth:`set_epoch` and lives in shared memory, so DataLoader
    workers (persistent or not) see the new value.  Resized images (uint8) and
    foreground masks are cached in memory per index, so disk and GrabCut are hit
    once per image *per DataLoader worker*; call :meth:`preload` before creating
    the DataLoader to compute them once in the main process (forked workers
    inherit the cache).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        synthesizer: Callable | None = None,
        seed: int = 0,
        foreground_method: str | Callable | None | bool = None,
        *,
        fit: str,
    ):
        samples = list(samples)
        if not samples:
            raise ValueError("SyntheticAnomalyDataset needs at least one training image.")
        super().__init__(samples, image_size, fit=fit)
        if synthesizer is None:
            from rdexpert.synthesis import AnomalySynthesizer  # lazy: optional at import time

            synthesizer = AnomalySynthesizer()
        self.synthesizer = synthesizer
        self.seed = int(seed)
        self.foreground_method = foreground_method
        self._epoch = torch.zeros(1, dtype=torch.int64)
        try:
            self._epoch.share_memory_()
        except Exception:  # pragma: no cover - shared memory unavailable
            pass

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch[0] = int(value)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _foreground(self, img_u8: np.ndarray) -> np.ndarray | None:
        method = self.foreground_method
        if method is False:
            return None
        img = img_u8.astype(np.float32) / 255.0
        if method is None and callable(getattr(self.synthesizer, "foreground_mask", None)):
            fg = self.synthesizer.foreground_mask(img)
        elif callable(method):
            fg = method(img)
        else:
            from rdexpert.synthesis import foreground_mask  # lazy: optional at import time

            fg = foreground_mask(img, "auto" if method is None else str(method))
        if fg is None:
            return None
        fg = np.asarray(fg)
        if fg.ndim == 3:
            fg = fg[..., 0]
        return fg.astype(bool) if fg.dtype == bool else fg > 0.5

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        img = fit_image(load_image(self.samples[index].path), self.image_size, self.fit, padded=False)
        return img, self._foreground(img)

    def __getitem__(self, index: int) -> dict:
        index = self._index(index)
        img_u8, fg = self._load(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        img = img_u8.astype(np.float32) / 255.0
        out = self.synthesizer(img.copy(), rng, None if fg is None else fg.copy())
        aug = np.clip(np.asarray(out.image, dtype=np.float32), 0.0, 1.0)
        mask = np.asarray(out.mask, dtype=np.float32)
        if aug.shape != img.shape or mask.shape != img.shape[:2]:
            raise ValueError(
                f"synthesizer returned image {aug.shape} / mask {mask.shape} for an input of "
                f"shape {img.shape}; they must match."
            )
        size = self.image_size
        box = content_box(img.shape[0], img.shape[1], size, "pad")  # img is the picture, unpadded: its box
        img, aug, mask = pad_to_square(img, size), pad_to_square(aug, size), pad_to_square(mask, size, "zero")
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "augmented": torch.from_numpy(np.ascontiguousarray(aug.transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(mask))[None],
            "label": int(mask.max() > 0) if mask.size else 0,
            "path": str(self.samples[index].path),
            "box": torch.tensor(box, dtype=torch.int64),
        }
