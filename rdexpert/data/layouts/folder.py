"""Listing the samples of plain folders: a folder of normal images, optionally defects and masks.

Why this module exists: the simplest dataset is a folder of normal images
(training only, the ``"folder"`` layout); a test set can be built from a second
folder of defective images and a folder of masks matched by file name, where a
defective image without a mask still counts for image-level metrics.
"""
from __future__ import annotations

from pathlib import Path

from rdexpert.data.layouts.samples import Sample, _index_by_stem, _require_images

__all__ = ["folder_samples"]



def folder_samples(
    normal_dir: str | Path | None,
    defect_dir: str | Path | None = None,
    mask_dir: str | Path | None = None,
) -> list[Sample]:
    """List samples from plain folders (non-recursive).

    ``normal_dir`` images get label 0 (defect_type ``"good"``); ``defect_dir``
    images get label 1 (defect_type ``"defect"``) and a mask from ``mask_dir``
    matched by stem (``<stem>.png`` or ``<stem>_mask.png``, any accepted
    extension).  Defective images without a mask are allowed here: their
    mask_path is None, and pixel-level metrics skip them (image-level metrics
    still use them).
    """
    if normal_dir is None and defect_dir is None:
        raise ValueError("folder_samples needs normal_dir and/or defect_dir.")
    samples: list[Sample] = []
    if normal_dir is not None:
        nd = Path(normal_dir).expanduser()
        if not nd.is_dir():
            raise FileNotFoundError(f"Normal image folder '{nd}' does not exist.")
        samples.extend(Sample(p, 0, None, "good") for p in _require_images(nd))
    if defect_dir is not None:
        dd = Path(defect_dir).expanduser()
        if not dd.is_dir():
            raise FileNotFoundError(f"Defect image folder '{dd}' does not exist.")
        index: dict[str, Path] = {}
        if mask_dir is not None:
            md = Path(mask_dir).expanduser()
            if not md.is_dir():
                raise FileNotFoundError(f"Mask folder '{md}' does not exist.")
            index = {k: v for k, v in _index_by_stem(md).items() if v.is_file()}
        for p in _require_images(dd):
            mask = index.get(p.stem) or index.get(f"{p.stem}_mask")
            samples.append(Sample(p, 1, mask, "defect"))
    return samples

