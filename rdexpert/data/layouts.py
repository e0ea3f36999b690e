"""Dataset layouts: listing the samples of a dataset, and the holdout split.

Why this module exists: finding which files are normal, defective and which
mask goes with which image is a question of folder layout only; it needs no
pixel decoding and no torch, so the app and the CLI can list and validate
datasets cheaply.

Supported dataset layouts
-------------------------
* ``"mvtec"``: MVTec AD, MPDD, BTAD (``ok``/``ko`` folders), MVTec 3D-AD (RGB
  part only) and MVTec LOCO (masks are folders of PNGs that get merged).
* ``"mvtec_ad2"``: MVTec AD 2 (``train/good``, ``validation/good``,
  ``test_public/{good,bad,ground_truth/bad}``); ``validation/good`` is the
  held-out set (:func:`holdout_samples`).
* ``"visa"``: VisA with its split CSV (``split_csv/1cls.csv``).
* ``"folder"``: a plain folder of normal images (see :func:`folder_samples` for
  defective images and masks).
* ``"anomalib_folder"``: anomalib's ``Folder`` datamodule layout, named folders
  of normal, abnormal and mask images; the folders travel in the layout string
  (:class:`AnomalibFolder`), so checkpoints record them.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qsl, urlencode

import numpy as np

from rdexpert.data.images import _EXT_HELP, _image_files, _is_image

__all__ = [
    "NORMAL_NAMES",
    "Sample",
    "list_images",
    "LAYOUTS",
    "mvtec_samples",
    "mvtec_ad2_samples",
    "visa_samples",
    "AnomalibFolder",
    "parse_layout",
    "holdout_samples",
    "train_and_holdout",
    "folder_samples",
    "detect_layout",
    "list_samples",
    "list_categories",
    "split_holdout",
]

#: Folder names that mean "normal" in MVTec-like layouts (BTAD uses ``ok``).
NORMAL_NAMES: tuple[str, ...] = ("good", "ok")

#: The names ``list_samples`` and ``--layout`` take ("auto" guesses every one but ``anomalib_folder``).
LAYOUTS: tuple[str, ...] = ("auto", "mvtec", "mvtec_ad2", "visa", "folder", "anomalib_folder")

#: anomalib's ``Folder`` default share of normal images that are tested when there is no ``normal_test_dir``
#: (its ``normal_split_ratio`` / ``test_split_ratio``, 0.2), and the fixed seed of that split here.
NORMAL_SPLIT_RATIO, SPLIT_SEED = 0.2, 0


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``mask_path`` is None for normal images (all-zero mask) and, in plain-folder
    datasets only, for defective images without a mask (pixel metrics skip them).
    It may be a folder (MVTec LOCO), which :func:`load_mask` merges.
    """

    path: Path
    label: int  # 0 normal, 1 defective
    mask_path: Path | None
    defect_type: str


def list_images(folder: str | Path, recursive: bool = False, must_exist: bool = True) -> list[Path]:
    """Sorted image files in ``folder`` (extensions in IMAGE_EXTENSIONS, case-insensitive).

    Hidden files (``.DS_Store``, macOS ``._*`` resource forks) are skipped.
    Raises FileNotFoundError when ``must_exist`` and the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        if must_exist:
            raise FileNotFoundError(f"Image folder '{folder}' does not exist.")
        return []
    return _image_files(folder, recursive)


def _require_images(folder: Path) -> list[Path]:
    files = list_images(folder)
    if not files:
        raise ValueError(
            f"No images found in '{folder}'. Accepted extensions: {_EXT_HELP} "
            f"(case-insensitive)."
        )
    return files


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Dataset root '{root}' does not exist.")
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset root '{root}' is not a folder.")
    return root


def _categories_in(root: Path) -> list[str]:
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    likely = [
        d for d in subdirs
        if (root / d / "train").is_dir() or (root / d / "test").is_dir() or (root / d / "Data").is_dir()
    ]
    return likely or [d for d in subdirs if d != "split_csv"]


def _category_dir(root: Path, category: str | None) -> Path:
    if category in (None, "", "."):
        return root
    cat_dir = root / str(category)
    if not cat_dir.is_dir():
        found = _categories_in(root)
        listing = ", ".join(found) if found else "(none)"
        raise FileNotFoundError(
            f"Category '{category}' not found in '{root}'. Categories found there: {listing}."
        )
    return cat_dir


def _image_dir(folder: Path) -> Path:
    """MVTec 3D-AD keeps RGB images in a ``rgb`` sub-folder."""
    rgb = folder / "rgb"
    return rgb if rgb.is_dir() else folder


def _index_by_stem(folder: Path) -> dict[str, Path]:
    """Map file stem (and folder name) -> path; image files win over folders."""
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    entries = sorted(folder.iterdir(), key=lambda p: str(p))
    for p in entries:
        if p.is_dir() and not p.name.startswith("."):
            index.setdefault(p.name, p)
    for p in entries:
        if _is_image(p):
            # prefer .png when both foo.png and foo.bmp exist
            if p.stem not in index or index[p.stem].is_dir() or p.suffix.lower() == ".png":
                index[p.stem] = p
    return index


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


def visa_samples(
    root: str | Path, category: str, split: str, split_csv: str | Path | None = None
) -> list[Sample]:
    """List samples of VisA from its split CSV.

    The CSV (default ``root/split_csv/1cls.csv``) has the columns
    ``object,split,label,image,mask`` with ``label`` in {normal, anomaly} and
    paths relative to ``root``.  ``defect_type`` is ``"good"`` or ``"anomaly"``
    (VisA has no per-type labels in 1cls.csv).
    """
    _check_split(split)
    root = _check_root(root)
    csv_path = Path(split_csv) if split_csv is not None else root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"VisA split CSV '{csv_path}' not found. Put VisA's split_csv/1cls.csv "
            f"(columns object,split,label,image,mask) there or pass split_csv=."
        )
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower() for f in (reader.fieldnames or [])}
        need = {"object", "split", "label", "image", "mask"}
        if not need <= fields:
            raise ValueError(
                f"VisA split CSV '{csv_path}' lacks columns {sorted(need - fields)}; "
                f"expected object,split,label,image,mask."
            )
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    objects = sorted({r["object"] for r in rows})
    if category not in objects:
        raise FileNotFoundError(
            f"Category '{category}' not found in '{csv_path}'. Categories found there: "
            f"{', '.join(objects) if objects else '(none)'}."
        )
    samples: list[Sample] = []
    for r in rows:
        if r["object"] != category or r["split"].lower() != split:
            continue
        img = root / r["image"]
        if not img.is_file():
            raise FileNotFoundError(f"Image '{img}' listed in '{csv_path}' does not exist.")
        label = 0 if r["label"].lower() in ("normal", "good", "0") else 1
        mask: Path | None = None
        if label == 1:
            if not r["mask"]:
                raise FileNotFoundError(
                    f"No mask listed in '{csv_path}' for anomalous image '{img}'."
                )
            mask = root / r["mask"]
            if not mask.exists():
                raise FileNotFoundError(
                    f"No mask for defective image '{img}': expected '{mask}' (from '{csv_path}')."
                )
        samples.append(Sample(img, label, mask, "good" if label == 0 else "anomaly"))
    if not samples:
        raise ValueError(f"No '{split}' rows for category '{category}' in '{csv_path}'.")
    samples.sort(key=lambda s: str(s.path))
    return samples


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


def _folder(base: Path, folder: str | Path, what: str) -> Path:
    """``folder`` under ``base`` (absolute folders as they are); it must exist."""
    path = base / Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} '{path}' does not exist.")
    return path


@dataclass(frozen=True)
class AnomalibFolder:
    """anomalib's ``Folder`` layout, with its datamodule's argument names.

    Folders are relative to the dataset root (or absolute). ``"train"``: the
    ``normal_dir`` images; ``"test"``: every ``abnormal_dir`` image (label 1,
    defect_type = the folder's name) and the ``normal_test_dir`` images (label 0).
    Without a ``normal_test_dir`` a seeded ``normal_split_ratio`` of the normal
    images is tested and the rest trains, as anomalib does (both splits make the
    same split). Masks are matched by file name (``<stem>.png`` or
    ``<stem>_mask.png``, any accepted extension) in ``mask_dir/<abnormal folder
    name>/`` when that exists, else in ``mask_dir``. Without ``mask_dir``
    defective images have no mask and count for image-level metrics only
    (anomalib's classification task); with it, a defective image without a
    mask is an error (a misnamed mask, not a choice).

    :attr:`layout` is the same as a string (``anomalib_folder?normal_dir=good&...``)
    that goes wherever a layout name goes: ``list_samples``, ``TrainConfig.layout``,
    a checkpoint's config.json, ``--layout``.
    """

    normal_dir: str
    abnormal_dir: tuple[str, ...] = ()
    mask_dir: str | None = None
    normal_test_dir: str | None = None
    normal_split_ratio: float = NORMAL_SPLIT_RATIO
    seed: int = SPLIT_SEED

    def __post_init__(self):
        abnormal = self.abnormal_dir
        abnormal = (abnormal,) if isinstance(abnormal, (str, Path)) else tuple(abnormal or ())
        object.__setattr__(self, "abnormal_dir", tuple(str(d) for d in abnormal))
        for key in ("normal_dir", "mask_dir", "normal_test_dir"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, str(getattr(self, key)))
        if not 0.0 <= self.normal_split_ratio < 1.0:
            raise ValueError(f"normal_split_ratio must be in [0, 1), got {self.normal_split_ratio}")

    @property
    def layout(self) -> str:
        """The layout string (URL query encoding); the split ratio and seed only when they decide the split."""
        items = [("normal_dir", self.normal_dir)] + [("abnormal_dir", d) for d in self.abnormal_dir]
        items += [(k, getattr(self, k)) for k in ("mask_dir", "normal_test_dir") if getattr(self, k) is not None]
        if self.normal_test_dir is None:
            items += [("normal_split_ratio", repr(float(self.normal_split_ratio))), ("seed", str(int(self.seed)))]
        return "anomalib_folder?" + urlencode(items)

    def samples(self, root: str | Path, split: str) -> list[Sample]:
        """The ``split`` ("train" | "test") samples of the dataset in ``root``."""
        _check_split(split)
        root = _check_root(root)
        normal = _require_images(_folder(root, self.normal_dir, "Normal image folder"))
        normals = [Sample(p, 0, None, "good") for p in normal]
        if self.normal_test_dir is not None:
            train = normals
            tests = _require_images(_folder(root, self.normal_test_dir, "Normal test folder"))
            test = [Sample(p, 0, None, "good") for p in tests]
        else:
            train, test = split_holdout(normals, self.normal_split_ratio, seed=self.seed)
        if split == "train":
            return train
        if not self.abnormal_dir:
            raise ValueError("The anomalib_folder layout has no test split without abnormal_dir (CLI --abnormal-dir).")
        masks = _folder(root, self.mask_dir, "Mask folder") if self.mask_dir is not None else None
        owners: dict[tuple[Path, str], Path] = {}
        for folder in (_folder(root, d, "Abnormal image folder") for d in self.abnormal_dir):
            if masks is None:
                test += [Sample(p, 1, None, folder.name) for p in _require_images(folder)]
                continue
            mask_folder = masks / folder.name if (masks / folder.name).is_dir() else masks
            index = {k: v for k, v in _index_by_stem(mask_folder).items() if v.is_file()}
            for p in _require_images(folder):
                mask = index.get(p.stem) or index.get(f"{p.stem}_mask")
                if mask is None:
                    raise FileNotFoundError(
                        f"No mask for defective image '{p}': expected '{mask_folder / p.stem}.png' or "
                        f"'{mask_folder / p.stem}_mask.png'. Name the mask after the image, or leave out the mask "
                        f"folder for image-level metrics only."
                    )
                if owners.setdefault((mask_folder, p.stem), p) != p:
                    raise ValueError(
                        f"'{owners[mask_folder, p.stem]}' and '{p}' would share the mask '{mask}': put each "
                        f"abnormal folder's masks in '{masks}/<folder name>/'."
                    )
                test.append(Sample(p, 1, mask, folder.name))
        return test


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


def split_holdout(
    samples: Sequence[Sample], fraction: float = 0.1, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministically split normal training samples into (train, holdout).

    The holdout (about ``fraction`` of the images, rounded) is for threshold
    calibration / model selection, never the test set: defective samples are
    refused.  When ``len(samples) >= 2`` and ``fraction > 0`` both parts keep at
    least one image; with fewer than 2 samples or ``fraction == 0`` the holdout
    is empty.  Both parts keep the input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    samples = list(samples)
    if any(s.label != 0 for s in samples):
        raise ValueError("split_holdout expects normal training images only (label 0); never split the test set.")
    n = len(samples)
    if n < 2 or fraction == 0.0:
        return samples, []
    k = int(round(n * fraction))
    k = min(max(k, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    hold = set(int(i) for i in perm[:k])
    train = [s for i, s in enumerate(samples) if i not in hold]
    holdout = [s for i, s in enumerate(samples) if i in hold]
    return train, holdout


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


def list_categories(root: str | Path) -> list[str]:
    """The category folders of a dataset root (``--category all``), sorted by name."""
    root = _check_root(root)
    found = _categories_in(root)
    if not found:
        raise FileNotFoundError(f"no category folders found in '{root}' (expected e.g. '{root}/<category>/train')")
    return found
