"""Listing the samples of MVTec-style datasets and of MVTec AD 2.

Why this module exists: MVTec AD and the datasets that copied its folders
(MPDD, BTAD with ``ok``/``ko``, MVTec 3D-AD's RGB part, MVTec LOCO with mask
folders) share one layout, ``<category>/{train/good, test/<type>,
ground_truth/<type>}``, matched here by file stem. MVTec AD 2 renames the test
folder (``test_public``) and adds ``validation/good``, its own held-out set.
"""
from __future__ import annotations

from pathlib import Path

from rdexpert.data.images.files import _EXT_HELP, list_images
from rdexpert.data.layouts.samples import (
    NORMAL_NAMES,
    Sample,
    _category_dir,
    _check_root,
    _check_split,
    _image_dir,
    _index_by_stem,
    _require_images,
)

__all__ = ["mvtec_samples", "mvtec_ad2_samples"]


def _typed_samples(split_dir: Path, gt_root: Path) -> list[Sample]:
    """``split_dir/<type>/`` images: label 0 for ``good``/``ok``, else 1 with the mask from ``gt_root/<type>/``."""
    samples: list[Sample] = []
    type_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p != gt_root)
    if not type_dirs:
        raise FileNotFoundError(f"No defect-type folders (good, <defect>...) in '{split_dir}'.")
    for tdir in type_dirs:
        dtype = tdir.name
        img_dir = _image_dir(tdir)
        files = list_images(img_dir)
        if not files:
            if not any(tdir.iterdir()):
                continue  # an empty defect-type folder: nothing to list
            raise ValueError(
                f"No images found in '{img_dir}'. Accepted extensions: {_EXT_HELP} (case-insensitive)."
            )
        if dtype.lower() in NORMAL_NAMES:
            samples.extend(Sample(p, 0, None, dtype) for p in files)
            continue
        gt_index = _index_by_stem(gt_root / dtype)
        gt3d_index = _index_by_stem(tdir / "gt")
        for p in files:
            stem = p.stem
            mask = (
                gt_index.get(f"{stem}_mask")
                or gt_index.get(stem)
                or gt3d_index.get(stem)
                or gt3d_index.get(f"{stem}_mask")
            )
            if mask is None:
                expected = [
                    gt_root / dtype / f"{stem}_mask.png",
                    gt_root / dtype / f"{stem}.png",
                    gt_root / dtype / f"{stem}.bmp",
                    gt_root / dtype / stem / "000.png",
                    tdir / "gt" / f"{stem}.png",
                ]
                raise FileNotFoundError(
                    f"No mask for defective test image '{p}'. Expected one of: "
                    + ", ".join(f"'{e}'" for e in expected)
                    + ". Add the mask, or move the image out of the test set."
                )
            samples.append(Sample(p, 1, mask, dtype))
    return samples


def mvtec_samples(root: str | Path, category: str | None, split: str) -> list[Sample]:
    """List samples of an MVTec-style dataset.

    Layout ``root/category/{train/good, test/<type>, ground_truth/<type>/...}``;
    covers MVTec AD, MPDD, BTAD (``ok``/``ko``; masks ``<stem>.png``/``.bmp``),
    MVTec 3D-AD RGB (``<type>/rgb/*.png``, masks ``test/<type>/gt/<stem>.png``)
    and MVTec LOCO (masks are folders ``ground_truth/<type>/<stem>/*.png``).
    ``category`` may be None / "" when ``root`` is the category folder itself.

    ``split="train"`` returns the normal training images (``train/good`` or
    ``train/ok``); ``split="test"`` returns every ``test/<type>`` image, label 0
    for ``good``/``ok`` (mask_path None) and label 1 otherwise.  A defective test
    image without a mask raises FileNotFoundError naming the expected paths.
    """
    _check_split(split)
    root = _check_root(root)
    cat_dir = _category_dir(root, category)
    split_dir = cat_dir / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"'{split_dir}' does not exist: expected an MVTec-style layout "
            f"<root>/<category>/{{train/good, test/<defect_type>, ground_truth/<defect_type>}}."
        )
    samples: list[Sample] = []
    if split == "train":
        normal_dirs = [split_dir / n for n in NORMAL_NAMES if (split_dir / n).is_dir()]
        if not normal_dirs:
            raise FileNotFoundError(
                f"No normal training folder in '{split_dir}': expected one of "
                f"{', '.join(NORMAL_NAMES)}."
            )
        for d in normal_dirs:
            for p in _require_images(_image_dir(d)):
                samples.append(Sample(p, 0, None, d.name))
        return samples

    return _typed_samples(split_dir, cat_dir / "ground_truth")


def mvtec_ad2_samples(root: str | Path, category: str | None, split: str) -> list[Sample]:
    """List samples of MVTec AD 2: ``split`` is ``"train"``, ``"validation"`` or ``"test"``.

    Layout ``root/category/{train/good, validation/good, test_public/{good, bad},
    test_public/ground_truth/bad/<stem>_mask.png}``. ``"test"`` is ``test_public``,
    the only test set with labels; ``test_private`` and ``test_private_mixed``
    have none, so they are for ``rdexpert predict``, never listed here.
    ``"validation"`` (normal images) is the held-out set of training.
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}")
    cat_dir = _category_dir(_check_root(root), category)
    if split == "validation":
        return [Sample(p, 0, None, "good") for p in _require_images(cat_dir / "validation" / "good")]
    if split == "train":
        return mvtec_samples(cat_dir, None, "train")
    test_dir = cat_dir / "test_public"
    if not test_dir.is_dir():
        unlabelled = [d for d in ("test_private", "test_private_mixed") if (cat_dir / d).is_dir()]
        hint = (f"; {' and '.join(unlabelled)} have no labels: score them with `rdexpert predict --input "
                f"{cat_dir / unlabelled[0]}`") if unlabelled else ""
        raise FileNotFoundError(f"'{test_dir}' does not exist: MVTec AD 2 tests on test_public/{{good,bad}}{hint}.")
    return _typed_samples(test_dir, test_dir / "ground_truth")
