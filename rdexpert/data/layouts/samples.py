"""The :class:`Sample` record, and the folder checks and look-ups every dataset layout shares.

Why this module exists: each layout module (MVTec, VisA, plain folders,
anomalib Folder) answers "which images are normal, which defective, which mask
goes with which image" in the same vocabulary: a list of :class:`Sample`; the
same root, category and split checks give the same error messages everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdexpert.data.images.files import _EXT_HELP, _is_image, list_images

__all__ = ["NORMAL_NAMES", "Sample"]

#: Folder names that mean "normal" in MVTec-like layouts (BTAD uses ``ok``).
NORMAL_NAMES: tuple[str, ...] = ("good", "ok")


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
