"""Datasets and robust image loading for RD with Expert.

Conventions
-----------
* Images handed to the model are float32 tensors ``3 x S x S``, RGB, values in
  ``[0, 1]``.  Normalisation (ImageNet mean/std) is done later by the model,
  never here.
* Masks are float32 tensors ``1 x S x S`` with values in ``{0, 1}``.
* Resizing is to a square ``S x S`` without cropping: images use (antialiased)
  bilinear interpolation, masks use area/bilinear coverage thresholded at 0.5.

Supported dataset layouts
-------------------------
* ``"mvtec"``: MVTec AD, MPDD, BTAD (``ok``/``ko`` folders), MVTec 3D-AD (RGB
  part only) and MVTec LOCO (masks are folders of PNGs that get merged).
* ``"visa"``: VisA with its split CSV (``split_csv/1cls.csv``).
* ``"folder"``: a plain folder of normal images (see :func:`folder_samples` for
  defective images and masks).
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

try:  # torch is a hard dependency of the package, but keep loaders usable without it
    import torch
    from torch.utils.data import Dataset
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]
    Dataset = object  # type: ignore[assignment,misc]

from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "NORMAL_NAMES",
    "ImageLoadError",
    "load_image",
    "to_rgb",
    "load_mask",
    "resize_image",
    "resize_mask",
    "image_to_tensor",
    "mask_to_tensor",
    "list_images",
    "Sample",
    "mvtec_samples",
    "visa_samples",
    "folder_samples",
    "detect_layout",
    "list_samples",
    "ImageDataset",
    "SyntheticAnomalyDataset",
    "split_holdout",
]

#: Accepted image file extensions (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Images with more pixels than this are downscaled at load time (see load_image).
MAX_PIXELS: int = 50_000_000

#: Folder names that mean "normal" in MVTec-like layouts (BTAD uses ``ok``).
NORMAL_NAMES: tuple[str, ...] = ("good", "ok")

_EXT_HELP = ", ".join(IMAGE_EXTENSIONS)


class ImageLoadError(ValueError):
    """An image or mask file could not be read (missing, corrupt, not an image, too large)."""


# --------------------------------------------------------------------------- #
# Low-level loading
# --------------------------------------------------------------------------- #
def _fail(path: Path, reason: str) -> ImageLoadError:
    return ImageLoadError(
        f"Cannot read image file '{path}': {reason}. "
        f"Check that it is a valid image ({_EXT_HELP}); re-export it or remove it "
        f"from the dataset folder."
    )


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a single- or multi-channel numeric array to uint8.

    uint8 is kept; uint16 is divided by 257 (full 16-bit range -> 8 bit); other
    integer arrays are kept when they fit in 0..255, divided by 257 when they fit
    in 0..65535, min-max scaled otherwise; float arrays in [0, 1] are multiplied
    by 255, in [0, 255] kept, otherwise min-max scaled.  NaN/inf become 0.
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    a = arr.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0)
    if a.size == 0:
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif lo >= 0.0 and hi <= 65535.0 and np.issubdtype(arr.dtype, np.integer):
        a = a / 257.0
    else:
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 RGBA -> HxWx3 uint8 RGB, alpha-composited over black."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.round(rgb * alpha).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(im.convert("L"), dtype=np.uint8))
    if mode.startswith("I") or mode.startswith("F"):  # I, I;16, I;16B, F, ...
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        return _gray_to_rgb(_to_uint8(arr))
    if mode in ("P", "PA"):
        if mode == "PA" or "transparency" in im.info:
            return _composite_on_black(np.asarray(im.convert("RGBA"), dtype=np.uint8))
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    if mode in ("RGBA", "LA", "RGBa", "La"):
        return _composite_on_black(np.asarray(im.convert("RGBA"), dtype=np.uint8))
    # CMYK, YCbCr, LAB, HSV, RGBX, ... : let PIL convert (raises if it cannot).
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _cv2_read(path: Path) -> np.ndarray | None:
    """Fallback decoder (OpenCV); returns the raw array (BGR order) or None."""
    try:
        import cv2
    except ImportError:  # pragma: no cover
        return None
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
        if buf.size == 0:
            return None
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except Exception:  # cv2.error, MemoryError, ...
        return None


def _cv2_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return _gray_to_rgb(_to_uint8(arr))
    if arr.ndim == 3 and arr.shape[2] == 1:
        return _gray_to_rgb(_to_uint8(arr[..., 0]))
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(_to_uint8(arr)[..., ::-1])
    if arr.ndim == 3 and arr.shape[2] == 4:
        bgra = _to_uint8(arr)
        return _composite_on_black(np.ascontiguousarray(bgra[..., [2, 1, 0, 3]]))
    raise ValueError(f"unsupported array shape {arr.shape}")


def to_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or an RGB(A)/grey array (uint8, uint16, float, bool) as H x W x 3 uint8, converted like image files."""
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return _gray_to_rgb(_to_uint8(array))
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(_to_uint8(array))
    if array.ndim == 3 and array.shape[2] == 4:
        return _composite_on_black(_to_uint8(array))
    raise ValueError(
        f"an image array must be H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA); got shape {array.shape}"
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageLoadError(f"Image file '{path}' does not exist. Check the path or re-list the dataset.")
    if path.is_dir():
        raise ImageLoadError(f"'{path}' is a folder, not an image file. Pass the path of an image file.")


def _open_pil(path: Path) -> Image.Image:
    """Open with PIL, turning the decompression-bomb guard into ImageLoadError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"Image file '{path}' is too large to load safely ({exc}). "
            f"Downscale it (e.g. to a few thousand pixels per side) before using it."
        ) from exc


def load_image(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Load an image file as an ``H x W x 3`` uint8 RGB array.

    Robust to: grayscale (replicated to 3 channels), RGBA / LA / palette with
    transparency (alpha-composited over black), palette images, 16-bit PNG/TIFF
    (16-bit values divided by 257; 32-bit int / float images scaled to 0..255),
    CMYK/YCbCr (converted by PIL).  OpenCV is used as a fallback decoder when PIL
    cannot identify or convert the file.  EXIF orientation is *not* applied (the
    masks of anomaly datasets are aligned with the stored pixel grid).

    Large images: an image with more than ``max_pixels`` pixels (default 50 MP)
    is downscaled at load time by an integer factor (JPEG DCT draft mode when
    possible, then box-filter ``Image.reduce``) so that it fits under the limit;
    the aspect ratio is preserved (the model resizes to ``S x S`` anyway).  Images
    beyond PIL's decompression-bomb limit (about 179 MP by default) are refused
    with an :class:`ImageLoadError`.  ``max_pixels=None`` disables downscaling.

    Raises:
        ImageLoadError: missing / corrupt / truncated / non-image / too large file;
            the message names the file and says what to do.
    """
    path = Path(path)
    _check_file(path)
    pil_error: Exception | None = None
    try:
        im = _open_pil(path)
        with im:
            w, h = im.size
            factor = 1
            if max_pixels is not None and w * h > max_pixels:
                factor = int(math.ceil(math.sqrt(w * h / float(max_pixels))))
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, w // factor), max(1, h // factor)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
            if factor > 1:
                cur = Image.fromarray(_pil_to_rgb(im))
                w2, h2 = cur.size
                if w2 * h2 > max_pixels:
                    f2 = int(math.ceil(math.sqrt(w2 * h2 / float(max_pixels))))
                    cur = cur.reduce(f2)
                return np.ascontiguousarray(np.asarray(cur, dtype=np.uint8))
            return np.ascontiguousarray(_pil_to_rgb(im))
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError(
            f"Image file '{path}' is too large to decode in memory. Downscale it before using it."
        ) from exc
    except Exception as exc:  # UnidentifiedImageError, OSError (truncated), ValueError (mode)...
        pil_error = exc
    # A truncated / corrupt file that PIL recognised: do not let OpenCV return a
    # partially decoded image silently.
    if not isinstance(pil_error, UnidentifiedImageError) and "truncated" in str(pil_error).lower():
        raise _fail(path, f"the file is truncated or corrupt ({pil_error})") from pil_error
    arr = _cv2_read(path)
    if arr is None:
        reason = (
            "it is not an image format that PIL or OpenCV can decode"
            if isinstance(pil_error, UnidentifiedImageError)
            else f"decoding failed ({type(pil_error).__name__}: {pil_error})"
        )
        raise _fail(path, reason) from pil_error
    try:
        rgb = _cv2_to_rgb(arr)
    except Exception as exc:
        raise _fail(path, f"unsupported pixel layout ({exc})") from exc
    if max_pixels is not None and rgb.shape[0] * rgb.shape[1] > max_pixels:
        f = int(math.ceil(math.sqrt(rgb.shape[0] * rgb.shape[1] / float(max_pixels))))
        rgb = np.asarray(Image.fromarray(rgb).reduce(f), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _mask_from_pil(im: Image.Image, lossy: bool) -> np.ndarray:
    mode = im.mode
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        arr = np.asarray(im)[..., :3].max(axis=2)
    elif mode in ("LA", "La", "PA"):
        arr = np.asarray(im)[..., 0]
    elif mode in ("1", "L", "P") or mode.startswith("I") or mode.startswith("F"):
        arr = np.asarray(im)
    else:
        arr = np.asarray(im.convert("RGB")).max(axis=2)
    arr = np.nan_to_num(arr.astype(np.float64)) if arr.dtype.kind == "f" else arr
    if lossy:  # JPEG masks: compression noise around 0 must not become defect
        return np.asarray(arr) > (127 if np.asarray(arr).max() > 1 else 0.5)
    return np.asarray(arr) != 0


def _mask_from_cv2(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    return np.nan_to_num(arr) != 0


def _load_mask_file(path: Path) -> np.ndarray:
    _check_file(path)
    pil_error: Exception | None = None
    try:
        im = _open_pil(path)
        with im:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
            return np.ascontiguousarray(_mask_from_pil(im, lossy=im.format == "JPEG"))
    except ImageLoadError:
        raise
    except Exception as exc:
        pil_error = exc
    if "truncated" in str(pil_error).lower():
        raise _fail(path, f"the mask file is truncated or corrupt ({pil_error})") from pil_error
    arr = _cv2_read(path)
    if arr is None:
        raise _fail(path, f"the mask could not be decoded ({type(pil_error).__name__}: {pil_error})") from pil_error
    return np.ascontiguousarray(_mask_from_cv2(arr))


def load_mask(path: str | Path) -> np.ndarray:
    """Load a defect mask as an ``H x W`` bool array (True = defect).

    Any nonzero pixel is defect.  Colour masks use the maximum over the colour
    channels (so red, green or white masks all work; an alpha channel is
    ignored).  JPEG masks are thresholded at 128 to ignore compression noise.
    If ``path`` is a folder (MVTec LOCO: ``ground_truth/<type>/<stem>/000.png``
    ...), all image files inside are merged with a logical OR; they must have
    the same size.
    """
    path = Path(path)
    if path.is_dir():
        files = list_images(path, recursive=False, must_exist=False)
        if not files:
            raise ImageLoadError(
                f"Mask folder '{path}' contains no mask images ({_EXT_HELP}). "
                f"Add the mask image(s) or remove the folder."
            )
        merged: np.ndarray | None = None
        for f in files:
            m = _load_mask_file(f)
            if merged is None:
                merged = m
            elif m.shape != merged.shape:
                raise ImageLoadError(
                    f"Mask '{f}' has size {m.shape[1]}x{m.shape[0]} but the other masks in "
                    f"'{path}' are {merged.shape[1]}x{merged.shape[0]}; all parts of a mask must "
                    f"have the same size."
                )
            else:
                merged = merged | m
        assert merged is not None
        return merged
    return _load_mask_file(path)


# --------------------------------------------------------------------------- #
# Resizing / tensor conversion
# --------------------------------------------------------------------------- #
def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H x W x 3`` uint8 image to ``size x size`` (bilinear, antialiased, no crop)."""
    size = int(size)
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    out = Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H x W`` bool/0-1 mask to ``size x size`` bool.

    Bilinear (antialiased, i.e. area coverage when downscaling) on the 0/1 mask,
    then ``>= 0.5``.
    """
    size = int(size)
    m = np.asarray(mask)
    if m.shape[0] == size and m.shape[1] == size:
        return m.astype(bool)
    f = Image.fromarray(m.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(f) >= 0.5


def image_to_tensor(image: np.ndarray, size: int | None = None) -> "torch.Tensor":
    """``H x W x 3`` uint8 RGB -> float32 tensor ``3 x S x S`` in [0, 1] (resized when size is given)."""
    if size is not None:
        image = resize_image(image, size)
    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
    return t.float().div_(255.0).contiguous()


def mask_to_tensor(mask: np.ndarray, size: int | None = None) -> "torch.Tensor":
    """``H x W`` bool mask -> float32 tensor ``1 x S x S`` in {0, 1} (resized when size is given)."""
    if size is not None:
        mask = resize_mask(mask, size)
    return torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))[None]


# --------------------------------------------------------------------------- #
# Sample listing
# --------------------------------------------------------------------------- #
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


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


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
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((p for p in it if _is_image(p)), key=lambda p: str(p))


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

    type_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not type_dirs:
        raise FileNotFoundError(f"No defect-type folders (good, <defect>...) in '{split_dir}'.")
    gt_root = cat_dir / "ground_truth"
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


def detect_layout(root: str | Path, category: str | None) -> str:
    """Guess the dataset layout: ``"mvtec"``, ``"visa"`` or ``"folder"``.

    * ``visa``: ``root/split_csv/`` exists, or ``root/category/Data/Images``;
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
        f"folder (train/good, test/<type>, ground_truth/<type>), VisA (split_csv/1cls.csv "
        f"in the root) or a folder of images ({_EXT_HELP})."
    )


def list_samples(root: str | Path, category: str | None, split: str, layout: str = "auto") -> list[Sample]:
    """List samples of ``split`` ("train" | "test") for any supported layout.

    With the ``folder`` layout, ``root/category`` holds normal images only, so
    only ``split="train"`` is available; use :func:`folder_samples` to build a
    test set from plain folders.
    """
    _check_split(split)
    if layout not in ("auto", "mvtec", "visa", "folder"):
        raise ValueError(f"layout must be 'auto', 'mvtec', 'visa' or 'folder', got {layout!r}")
    if layout == "auto":
        layout = detect_layout(root, category)
    if layout == "mvtec":
        return mvtec_samples(root, category, split)
    if layout == "visa":
        if category in (None, "", "."):
            raise ValueError("The VisA layout needs a category (an 'object' of the split CSV).")
        return visa_samples(root, str(category), split)
    root = _check_root(root)
    cat_dir = _category_dir(root, category)
    if split != "train":
        raise ValueError(
            f"'{cat_dir}' is a plain image folder, which has no test split. Build a test set "
            f"with folder_samples(normal_dir, defect_dir, mask_dir)."
        )
    return folder_samples(cat_dir)


# --------------------------------------------------------------------------- #
# Torch datasets
# --------------------------------------------------------------------------- #
class ImageDataset(Dataset):
    """Evaluation dataset.

    Item ``i`` is ``dict(image=3xSxS float32 in [0,1], mask=1xSxS float32 in {0,1},
    label=int, path=str, has_mask=bool)``.  ``has_mask`` is False for normal
    images and for defective images without a mask (plain-folder datasets);
    pixel metrics should skip defective images with ``has_mask`` False.

    With ``cache=True`` the resized uint8 image and bool mask are kept in memory
    per index (per DataLoader worker; call :meth:`preload` before creating the
    DataLoader to fill it once in the main process).
    """

    def __init__(self, samples: Sequence[Sample], image_size: int, cache: bool = True):
        self.samples = list(samples)
        self.image_size = int(image_size)
        self.cache = bool(cache)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        s = self.samples[index]
        img = load_image(s.path)
        if s.mask_path is not None:
            mask = load_mask(s.mask_path)
            if mask.shape != img.shape[:2]:
                ra, rb = mask.shape[1] / mask.shape[0], img.shape[1] / img.shape[0]
                if abs(ra - rb) > 0.01 * rb:
                    warnings.warn(
                        f"Mask '{s.mask_path}' ({mask.shape[1]}x{mask.shape[0]}) and image "
                        f"'{s.path}' ({img.shape[1]}x{img.shape[0]}) have different aspect ratios; "
                        f"both are resized to {self.image_size}x{self.image_size}.",
                        stacklevel=2,
                    )
            mask = resize_mask(mask, self.image_size)
        else:
            mask = np.zeros((self.image_size, self.image_size), dtype=bool)
        out = (resize_image(img, self.image_size), mask)
        if self.cache:
            self._cache[index] = out
        return out

    def preload(self) -> "ImageDataset":
        for i in range(len(self)):
            self._load(i)
        return self

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        img, mask = self._load(index)
        s = self.samples[index]
        return {
            "image": image_to_tensor(img),
            "mask": mask_to_tensor(mask),
            "label": int(s.label),
            "path": str(s.path),
            "has_mask": s.mask_path is not None,
        }


class SyntheticAnomalyDataset(Dataset):
    """Training dataset: normal images plus a synthetic anomaly version.

    Item ``i`` is ``dict(image=3xSxS (normal), augmented=3xSxS (with synthetic
    anomaly), mask=1xSxS (synthetic anomaly mask), label=int (1 when the mask is
    non-empty), path=str)``.

    ``synthesizer(image_HxWx3_float32_0_1, rng, foreground) -> obj`` with
    ``.image`` (HxWx3 float32) and ``.mask`` (HxW float32); None builds
    ``rdexpert.synthesis.AnomalySynthesizer()``.

    ``foreground_method`` chooses the foreground mask handed to the synthesizer
    (computed once per image on the resized float image, then cached):

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
    ):
        self.samples = list(samples)
        if not self.samples:
            raise ValueError("SyntheticAnomalyDataset needs at least one training image.")
        self.image_size = int(image_size)
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
        self._images: dict[int, np.ndarray] = {}
        self._fg: dict[int, np.ndarray | None] = {}

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch[0] = int(value)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

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

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        img = self._images.get(index)
        if img is None:
            img = resize_image(load_image(self.samples[index].path), self.image_size)
            self._images[index] = img
        if index not in self._fg:
            self._fg[index] = self._foreground(img)
        return img, self._fg[index]

    def preload(self) -> "SyntheticAnomalyDataset":
        for i in range(len(self)):
            self._load(i)
        return self

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
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
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "augmented": torch.from_numpy(np.ascontiguousarray(aug.transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(mask))[None],
            "label": int(mask.max() > 0) if mask.size else 0,
            "path": str(self.samples[index].path),
        }


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
