"""anomalib's ``Folder`` layout: named folders of normal, abnormal and mask images.

Why this module exists: users coming from anomalib keep their datasets in its
``Folder`` datamodule layout, with its argument names. The folders travel in a
layout string (:attr:`AnomalibFolder.layout`, ``anomalib_folder?normal_dir=...``),
so a checkpoint's config records where its data came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from rdexpert.data.layouts.holdout import split_holdout
from rdexpert.data.layouts.samples import Sample, _check_root, _check_split, _index_by_stem, _require_images

__all__ = ["AnomalibFolder"]

#: anomalib's ``Folder`` default share of normal images that are tested when there is no ``normal_test_dir``
#: (its ``normal_split_ratio`` / ``test_split_ratio``, 0.2), and the fixed seed of that split here.
NORMAL_SPLIT_RATIO, SPLIT_SEED = 0.2, 0


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
