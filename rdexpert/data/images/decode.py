"""Decoding an image file or an in-memory image into an ``H x W x 3`` uint8 RGB array.

Why this module exists: anomaly datasets and uploads come in every format
(grey, 16-bit, palette, alpha, CMYK, huge, truncated); this is the one place
that turns any of them into the same RGB array, or refuses it with a message
that names the file and says what to do. Training, evaluation, the app and
inference all decode through it, so they see the same pixels.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rdexpert.data.images.files import _EXT_HELP

__all__ = ["MAX_PIXELS", "MIN_SIDE", "ImageLoadError", "NotAPicture", "load_image", "to_rgb"]

#: Images with more pixels than this are downscaled at load time (see load_image).
MAX_PIXELS: int = 50_000_000


class ImageLoadError(ValueError):
    """An image or mask file could not be read (missing, corrupt, not an image, too large)."""


class NotAPicture(ValueError):
    """Decoded, but not a picture the model can judge: too small, or values that are not finite numbers."""


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
        _check_values(arr)  # a float image may hold NaN: refused, not scored as black
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


#: Smallest accepted image side in pixels, for files, PIL images and arrays alike: a 1-pixel-wide image carries no
#: picture (it would be scored as a flat colour).
MIN_SIDE: int = 2


def _check_size(height: int, width: int) -> None:
    if height < MIN_SIDE or width < MIN_SIDE:
        raise NotAPicture(
            f"an image must be at least {MIN_SIDE} x {MIN_SIDE} pixels; got {height} x {width} (H x W). "
            "Check that the array or image is not empty or a single pixel."
        )


def _check_values(array: np.ndarray) -> None:
    """Refuse arrays that would otherwise be scored as a black (or meaningless) image."""
    kind = array.dtype.kind
    if kind == "c":
        raise NotAPicture(
            f"an image array must hold real numbers, got complex values ({array.dtype}); "
            "pass np.abs(a) or a.real if that is the picture"
        )
    if kind not in "biuf":
        raise NotAPicture(
            f"an image array must hold numbers (uint8, uint16, float or bool), got dtype {array.dtype}"
            + (" (Python objects: was it built from a list of arrays of different sizes, or of None?)"
               if kind == "O" else "")
        )
    if kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            nan, inf = int(np.isnan(array).sum()), int(bad.sum() - np.isnan(array).sum())
            raise NotAPicture(
                f"an image array must hold finite values; got {nan} NaN and {inf} infinite of "
                f"{array.size} values. Fill or mask them first (e.g. np.nan_to_num)"
            )


def to_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or an RGB(A)/grey array (uint8, uint16, float, bool) as H x W x 3 uint8, converted like image files.

    Raises ValueError for what cannot be a picture: a wrong shape, an image smaller than
    ``MIN_SIDE`` pixels a side (0 x 0, 1 x 1 ...), complex, object or string values, NaN or inf.
    """
    if isinstance(image, Image.Image):
        _check_size(image.height, image.width)
        return _pil_to_rgb(image)
    array = np.asarray(image)
    _check_values(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(
            f"an image array must be H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA); got shape {array.shape}"
        )
    _check_size(array.shape[0], array.shape[1])
    if array.ndim == 2:
        return _gray_to_rgb(_to_uint8(array))
    if array.shape[2] == 3:
        return np.ascontiguousarray(_to_uint8(array))
    return _composite_on_black(_to_uint8(array))


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
    """Load an image file as an ``H x W x 3`` uint8 RGB array (see :func:`_decode_file`), refusing one smaller than
    ``MIN_SIDE`` pixels a side or holding NaN / inf values with an :class:`ImageLoadError` that names the file."""
    path = Path(path)
    try:
        rgb = _decode_file(path, max_pixels)
        _check_size(*rgb.shape[:2])
    except NotAPicture as error:
        raise _fail(path, str(error)) from None
    return rgb


def _decode_file(path: Path, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
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
    except (ImageLoadError, NotAPicture):
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
