"""One entry point over every dataset layout: which layout, which samples, which categories, which held-out normals.

Why this module exists: training, evaluation, the CLI and the app name a
dataset by ``(root, category, layout)``, where ``layout`` may be ``"auto"``.
This module parses layout strings, guesses the layout from the folders, and
dispatches to the layout modules; it also answers the questions that depend on
the layout as a whole: the dataset's own held-out normals (MVTec AD 2) or a
:func:`.holdout.split_holdout` of the training images, and the category folders
of a dataset root (``--category all``).

Supported layouts
-----------------
* ``"mvtec"``: MVTec AD, MPDD, BTAD (``ok``/``ko`` folders), MVTec 3D-AD (RGB
  part only) and MVTec LOCO (masks are folders of PNGs that get merged).
* ``"mvtec_ad2"``: MVTec AD 2 (``train/good``, ``validation/good``,
  ``test_public/{good,bad,ground_truth/bad}``); ``validation/good`` is the
  held-out set (:func:`holdout_samples`).
* ``"visa"``: VisA with its split CSV (``split_csv/1cls.csv``).
* ``"folder"``: a plain folder of normal images (see :func:`.folder.folder_samples`
  for defective images and masks).
* ``"anomalib_folder"``: anomalib's ``Folder`` datamodule layout (:class:`.anomalib.AnomalibFolder`).
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from urllib.parse import parse_qsl

from rdexpert.data.images.files import _EXT_HELP, list_images
from rdexpert.data.layouts.anomalib import AnomalibFolder
from rdexpert.data.layouts.folder import folder_samples
from rdexpert.data.layouts.holdout import split_holdout
from rdexpert.data.layouts.mvtec import mvtec_ad2_samples, mvtec_samples
from rdexpert.data.layouts.samples import Sample, _categories_in, _category_dir, _check_root, _check_split
from rdexpert.data.layouts.visa import visa_samples

__all__ = [
    "LAYOUTS",
    "parse_layout",
    "detect_layout",
    "list_samples",
    "holdout_samples",
    "train_and_holdout",
    "list_dataset_categories",
]

#: The names ``list_samples`` and ``--layout`` take ("auto" guesses every one but ``anomalib_folder``).
LAYOUTS: tuple[str, ...] = ("auto", "mvtec", "mvtec_ad2", "visa", "folder", "anomalib_folder")


def parse_layout(layout: str) -> tuple[str, AnomalibFolder | None]:
    """``(name, folders)`` of a layout string: a name of :data:`LAYOUTS`, and for an ``anomalib_folder``
    string that carries its folders (:attr:`AnomalibFolder.layout`) those folders, else None."""
    name, _, query = str(layout).partition("?")
    if name not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not query:
        return name, None
    if name != "anomalib_folder":
        raise ValueError(f"only the anomalib_folder layout takes options, got {layout!r}")
    known = [f.name for f in fields(AnomalibFolder)]
    options: dict = {"abnormal_dir": []}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=True):
        if key not in known:
            raise ValueError(f"unknown anomalib_folder option {key!r} in {layout!r}; known: {', '.join(known)}")
        if key == "abnormal_dir":
            options[key].append(value)
        elif key in options:
            raise ValueError(f"anomalib_folder option {key!r} given twice in {layout!r}")
        else:
            try:
                options[key] = {"normal_split_ratio": float, "seed": int}.get(key, str)(value)
            except ValueError:
                raise ValueError(f"anomalib_folder option {key}={value!r} is not a number") from None
    if "normal_dir" not in options:
        raise ValueError(f"anomalib_folder layout {layout!r} lacks normal_dir")
    return name, AnomalibFolder(**options)


def detect_layout(root: str | Path, category: str | None) -> str:
    """Guess the dataset layout: ``"mvtec"``, ``"mvtec_ad2"``, ``"visa"`` or ``"folder"``.

    * ``visa``: ``root/split_csv/`` exists, or ``root/category/Data/Images``;
    * ``mvtec_ad2``: ``root/category/test_public`` (or ``test_private``) exists;
    * ``mvtec``: ``root/category/train`` or ``root/category/test`` exists;
    * ``folder``: ``root/category`` directly holds images.
    ``category`` may be None / "" when ``root`` is the category folder.
    """
    root = _check_root(root)
    if category not in (None, "", ".") and (root / "split_csv").is_dir() and not (
        (root / str(category) / "train").is_dir() or (root / str(category) / "test").is_dir()
    ):
        return "visa"
    cat_dir = _category_dir(root, category)
    if (cat_dir / "Data" / "Images").is_dir():
        return "visa"
    if (cat_dir / "test_public").is_dir() or (cat_dir / "test_private").is_dir():
        return "mvtec_ad2"
    if (cat_dir / "train").is_dir() or (cat_dir / "test").is_dir():
        return "mvtec"
    if list_images(cat_dir):
        return "folder"
    inner = _categories_in(cat_dir)
    if inner and any((cat_dir / c / "train").is_dir() or (cat_dir / c / "test").is_dir() for c in inner):
        raise ValueError(
            f"'{cat_dir}' looks like a dataset root, not a category folder. Categories found "
            f"there: {', '.join(inner)}; pass root='{cat_dir}' and one of them as the category."
        )
    raise ValueError(
        f"Cannot recognise the dataset layout of '{cat_dir}': expected an MVTec-style "
        f"folder (train/good, test/<type>, ground_truth/<type>), MVTec AD 2 (test_public/), VisA "
        f"(split_csv/1cls.csv in the root) or a folder of images ({_EXT_HELP}); for named normal/abnormal "
        f"folders use the anomalib_folder layout (--layout anomalib_folder --normal-dir ... --abnormal-dir ...)."
    )


def list_samples(root: str | Path, category: str | None, split: str, layout: str = "auto") -> list[Sample]:
    """List samples of ``split`` ("train" | "test") for any supported layout.

    ``layout`` is a name of :data:`LAYOUTS` or an anomalib_folder layout string
    (:attr:`AnomalibFolder.layout`), whose folders are relative to ``root/category``.
    With the ``folder`` layout, ``root/category`` holds normal images only, so
    only ``split="train"`` is available; use :func:`folder_samples` to build a
    test set from plain folders.
    """
    _check_split(split)
    layout, folders = parse_layout(layout)
    if layout == "auto":
        layout = detect_layout(root, category)
    if layout == "mvtec":
        return mvtec_samples(root, category, split)
    if layout == "mvtec_ad2":
        return mvtec_ad2_samples(root, category, split)
    if layout == "visa":
        if category in (None, "", "."):
            raise ValueError("The VisA layout needs a category (an 'object' of the split CSV).")
        return visa_samples(root, str(category), split)
    root = _check_root(root)
    cat_dir = _category_dir(root, category)
    if layout == "anomalib_folder":
        if folders is None:
            raise ValueError("the anomalib_folder layout needs its normal image folder: normal_dir (CLI --normal-dir), "
                             "and abnormal_dir (--abnormal-dir) to test")
        return folders.samples(cat_dir, split)
    if split != "train":
        raise ValueError(
            f"'{cat_dir}' is a plain image folder, which has no test split. Build a test set "
            f"with folder_samples(normal_dir, defect_dir, mask_dir), or use the anomalib_folder layout."
        )
    return folder_samples(cat_dir)


def holdout_samples(root: str | Path, category: str | None, layout: str = "auto") -> list[Sample] | None:
    """The dataset's own held-out normal images, or None when it has none (then :func:`split_holdout` makes them).

    MVTec AD 2 has one: ``validation/good``, normal images that are neither trained on nor tested.
    """
    name, _ = parse_layout(layout)
    if name == "auto":
        name = detect_layout(root, category)
    return mvtec_ad2_samples(root, category, "validation") if name == "mvtec_ad2" else None


def train_and_holdout(
    root: str | Path, category: str | None, layout: str = "auto", fraction: float = 0.1, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """(train, held-out) normal samples for training: the dataset's own held-out set when it has one
    (:func:`holdout_samples`; then every training image trains, whatever ``fraction``), else
    :func:`split_holdout` of the normal training images with ``fraction`` and ``seed``."""
    normal = [s for s in list_samples(root, category, "train", layout=layout) if s.label == 0]
    holdout = holdout_samples(root, category, layout)
    return (normal, holdout) if holdout is not None else split_holdout(normal, fraction, seed=seed)


def list_dataset_categories(root: str | Path) -> list[str]:
    """The category folders of a dataset root on disk (``--category all``), sorted by name.

    Not :func:`rdexpert.hub.list_repo_categories`, which lists the categories of a checkpoint repo on the Hub.
    """
    root = _check_root(root)
    found = _categories_in(root)
    if not found:
        raise FileNotFoundError(f"no category folders found in '{root}' (expected e.g. '{root}/<category>/train')")
    return found
