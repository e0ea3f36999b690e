"""Image and mask decoding, conversion and resizing.

Why this module exists: it is everything needed to turn an image file or an
in-memory array into the model's input tensor, and nothing more, so inference
and export can use it without the dataset-layout or torch ``Dataset`` code.

Conventions
-----------
* Images handed to the model are float32 tensors ``3 x S x S``, RGB, values in
  ``[0, 1]``.  Normalisation (ImageNet mean/std) is done later by the model,
  never here.
* Masks are float32 tensors ``1 x S x S`` with values in ``{0, 1}``.
* Fitting to the square ``S x S`` never crops; it is a model choice
  (``ModelConfig.input_fit``): "squash" resizes to ``S x S`` (the aspect ratio is lost),
  "pad" resizes the longer side to ``S`` and pads the rest (:func:`fit_image`). Images use
  (antialiased) bilinear interpolation, masks area/bilinear coverage thresholded at 0.5.
  :func:`content_box` says where the picture lies in the square; scores and pixel metrics
  look there only, never at the padding.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageLoadError",
    "load_image",
    "to_rgb",
    "load_mask",
    "resize_image",
    "resize_mask",
    "INPUT_FITS",
    "ContentBox",
    "content_box",
    "pad_to_square",
    "fit_image",
    "fit_mask",
    "image_to_tensor",
    "mask_to_tensor",
]

#: Accepted image file extensions (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Images with more pixels than this are downscaled at load time (see load_image).
MAX_PIXELS: int = 50_000_000

_EXT_HELP = ", ".join(IMAGE_EXTENSIONS)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Sorted image files of an existing ``folder`` (hidden files skipped)."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((p for p in it if _is_image(p)), key=lambda p: str(p))



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


#: Smallest accepted image side in pixels (an in-memory image smaller than this carries no picture).
MIN_SIDE: int = 2


def _check_size(height: int, width: int) -> None:
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(
            f"an image must be at least {MIN_SIDE} x {MIN_SIDE} pixels; got {height} x {width} (H x W). "
            "Check that the array or image is not empty or a single pixel."
        )


def _check_values(array: np.ndarray) -> None:
    """Refuse arrays that would otherwise be scored as a black (or meaningless) image."""
    kind = array.dtype.kind
    if kind == "c":
        raise ValueError(
            f"an image array must hold real numbers, got complex values ({array.dtype}); "
            "pass np.abs(a) or a.real if that is the picture"
        )
    if kind not in "biuf":
        raise ValueError(
            f"an image array must hold numbers (uint8, uint16, float or bool), got dtype {array.dtype}"
            + (" (Python objects: was it built from a list of arrays of different sizes, or of None?)"
               if kind == "O" else "")
        )
    if kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            nan, inf = int(np.isnan(array).sum()), int(bad.sum() - np.isnan(array).sum())
            raise ValueError(
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


# --------------------------------------------------------------------------- #
# Resizing / tensor conversion
# --------------------------------------------------------------------------- #
def _resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 image resized to ``height x width`` (bilinear, antialiased when downscaling)."""
    if image.shape[0] == height and image.shape[1] == width:
        return np.ascontiguousarray(image)
    out = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H x W x 3`` uint8 image to ``size x size`` (bilinear, antialiased, no crop)."""
    return _resize_to(image, int(size), int(size))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H x W`` bool/0-1 mask to ``size x size`` bool.

    Bilinear (antialiased, i.e. area coverage when downscaling) on the 0/1 mask,
    then ``>= 0.5``.
    """
    return fit_mask(mask, size, "squash")


#: How an image is fitted to the network's square input; the first is what the released code does.
INPUT_FITS: tuple[str, ...] = ("squash", "pad")


def _check_fit(fit: str) -> None:
    if fit not in INPUT_FITS:
        raise ValueError(f"unknown input fit {fit!r}; choose one of {INPUT_FITS}")


class ContentBox(NamedTuple):
    """Where the picture lies in the network's ``S x S`` input: ``height`` rows from ``top``, ``width`` columns
    from ``left`` (the whole square for "squash"; the rest is padding for "pad")."""

    top: int
    left: int
    height: int
    width: int

    @classmethod
    def of(cls, row) -> "ContentBox":
        """A box from a row of 4 numbers (a batch's ``box`` tensor row, a numpy row)."""
        return cls(*(int(v) for v in row))

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The content of an ``S x S`` (x C) array: its first two axes cut to the box."""
        return array[self.top : self.top + self.height, self.left : self.left + self.width]


def content_box(height: int, width: int, size: int, fit: str = "squash") -> ContentBox:
    """Where an ``height x width`` image lies once fitted to ``size x size``.

    "pad": the longer side becomes ``size``, the shorter one ``round(side * size / longer)`` (at least 1),
    centred (an odd remainder puts the extra row or column at the bottom or right).
    """
    _check_fit(fit)
    size = int(size)
    if fit == "squash" or height == width:
        return ContentBox(0, 0, size, size)
    longer = max(height, width)
    h, w = (max(1, round(side * size / longer)) for side in (height, width))
    return ContentBox((size - h) // 2, (size - w) // 2, h, w)


def pad_to_square(content: np.ndarray, size: int, fill: str = "edge") -> np.ndarray:
    """``content`` (h x w or h x w x C, sides at most ``size``) centred in ``size x size``, as :func:`content_box` does.

    ``fill="edge"`` (images) repeats the outermost row or column of the picture; ``"zero"`` (masks) fills
    with 0. Images are edge-filled rather than filled with a constant colour so that no artificial step edge
    runs along the picture's border: the stride-16 features and the blurred map (sigma 4 px) near that border
    see the picture continued, not an edge that no normal image has there, and the foreground estimate of
    the synthetic anomalies is not swayed by a block of one colour.
    """
    if fill not in ("edge", "zero"):
        raise ValueError(f"unknown fill {fill!r}; choose 'edge' or 'zero'")
    h, w = content.shape[:2]
    if h > size or w > size:
        raise ValueError(f"cannot pad a {h} x {w} picture to {size} x {size}: it is larger")
    if h == w == size:
        return np.ascontiguousarray(content)
    top, left = (size - h) // 2, (size - w) // 2
    widths = [(top, size - h - top), (left, size - w - left)] + [(0, 0)] * (content.ndim - 2)
    return np.pad(content, widths, mode="edge" if fill == "edge" else "constant")


def fit_image(image: np.ndarray, size: int, fit: str = "squash", padded: bool = True) -> np.ndarray:
    """An ``H x W x 3`` uint8 image as the network takes it, ``size x size`` (see :func:`content_box`).

    "squash" is :func:`resize_image`; "pad" keeps the aspect ratio and edge-fills the rest
    (:func:`pad_to_square`). ``padded=False`` returns the resized picture before padding
    (its box's ``height x width``), e.g. to place synthetic anomalies on the picture only.
    A square image gives the same array either way.
    """
    box = content_box(image.shape[0], image.shape[1], size, fit)
    content = _resize_to(image, box.height, box.width)
    return pad_to_square(content, int(size)) if padded else content


def fit_mask(mask: np.ndarray, size: int, fit: str = "squash", box: ContentBox | None = None) -> np.ndarray:
    """An ``H x W`` mask fitted like its image (:func:`fit_image`): ``size x size`` bool, padding False.

    ``box``: its image's content box, so that a mask stored at another resolution lands on the same pixels
    (default: the mask's own box).
    """
    m = np.asarray(mask)
    box = box or content_box(m.shape[0], m.shape[1], size, fit)
    if (box.height, box.width) == m.shape[:2]:
        content = m.astype(bool)
    else:
        f = Image.fromarray(m.astype(np.float32), mode="F").resize((box.width, box.height), Image.BILINEAR)
        content = np.asarray(f) >= 0.5
    return pad_to_square(content, int(size), fill="zero")


def image_to_tensor(image: np.ndarray, size: int | None = None, fit: str = "squash") -> "torch.Tensor":
    """``H x W x 3`` uint8 RGB -> float32 tensor ``3 x S x S`` in [0, 1] (fitted to ``size`` when given)."""
    if size is not None:
        image = fit_image(image, size, fit)
    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
    return t.float().div_(255.0).contiguous()


def mask_to_tensor(mask: np.ndarray, size: int | None = None, fit: str = "squash") -> "torch.Tensor":
    """``H x W`` bool mask -> float32 tensor ``1 x S x S`` in {0, 1} (fitted to ``size`` when given)."""
    if size is not None:
        mask = fit_mask(mask, size, fit)
    return torch.from_numpy(np.array(mask, dtype=np.float32, copy=True))[None]
