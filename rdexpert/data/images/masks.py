"""Decoding a defect mask file (or a folder of mask parts) into an ``H x W`` bool array.

Why this module exists: masks are read differently from images: any nonzero
pixel is defect, colour masks take the maximum over channels, JPEG masks are
thresholded against compression noise, and MVTec LOCO stores a mask as a
folder of parts that are merged.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from rdexpert.data.images.decode import ImageLoadError, _check_file, _cv2_read, _fail, _open_pil
from rdexpert.data.images.files import _EXT_HELP, _image_files

__all__ = ["load_mask"]


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
        files = _image_files(path)
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
