"""Foreground masks: where on the image a synthetic anomaly may land.

Why this module exists: for object categories anomalies must stay on the
object, not the background.  This module holds the per-category table of
foreground methods and the methods themselves (Otsu, inverse Otsu, GrabCut,
and an automatic choice); masks are bool ``HxW``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "FOREGROUND_METHODS",
    "TEXTURE_CATEGORIES",
    "DEFAULT_FOREGROUND",
    "foreground_mask",
    "foreground_method_for",
    "choose_foreground",
]

FOREGROUND_METHODS = ("none", "otsu", "otsu_inverse", "grabcut", "auto", "grabcut_released", "otsu_inverse_released")

# --------------------------------------------------------------------------
# Category tables
# --------------------------------------------------------------------------

#: Categories whose images are a texture filling the frame (no foreground mask).
#: MVTec AD has five; VisA and MPDD have none.
TEXTURE_CATEGORIES = frozenset({"carpet", "grid", "leather", "tile", "wood"})

#: Foreground method for known MVTec AD / VisA / MPDD categories.  Thin dark
#: objects on a light background (screw, capsule) use inverse Otsu as in the
#: reference; bright objects on a dark background use Otsu; objects on busy
#: backgrounds use GrabCut; frame-filling objects and textures use no mask.
#: Unknown categories fall back to "auto" (see :func:`foreground_mask`).
DEFAULT_FOREGROUND: dict[str, str] = {
    # MVTec AD textures
    **{c: "none" for c in sorted(TEXTURE_CATEGORIES)},
    # MVTec AD objects
    "bottle": "none",  # bottle seen from above fills most of the frame
    "cable": "none",  # three cables fill the frame
    "capsule": "otsu_inverse",  # thin dark-printed capsule on a light background
    "hazelnut": "otsu",  # brown nut on a black background
    "metal_nut": "otsu",  # bright metal on a black background
    "pill": "otsu",  # white pill on a black background
    "screw": "otsu_inverse",  # thin dark screw on a light background
    "toothbrush": "grabcut",
    "transistor": "none",  # "misplaced" defects live on the background too
    "zipper": "none",  # zipper strip spans the whole frame
    # VisA
    "candle": "grabcut",
    "capsules": "grabcut",
    "cashew": "grabcut",
    "chewinggum": "grabcut",
    "fryum": "grabcut",
    "macaroni1": "grabcut",
    "macaroni2": "grabcut",
    "pcb1": "none",
    "pcb2": "none",
    "pcb3": "none",
    "pcb4": "none",
    "pipe_fryum": "grabcut",
    # MPDD
    "bracket_black": "otsu_inverse",
    "bracket_brown": "grabcut",
    "bracket_white": "grabcut",
    "connector": "grabcut",
    "metal_plate": "otsu_inverse",  # dark blue plate on a light grey background
    "tubes": "none",  # several tubes fill the frame
}


#: VisA's twelve categories (the released ``train_visa.py`` trains them all).
VISA_CATEGORIES = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
                   "pcb3", "pcb4", "pipe_fryum")

#: The authors' released code: on MVTec AD GrabCut for seven objects, inverse Otsu for the two thin dark ones,
#: no mask for the textures and transistor; on VisA (``train_visa.py`` with ``mask=True``) GrabCut for all twelve.
#: Its methods are the ``*_released`` ones.
RELEASED_FOREGROUND: dict[str, str] = {
    **{c: "grabcut_released" for c in ("bottle", "cable", "hazelnut", "metal_nut", "pill", "toothbrush", "zipper")},
    **{c: "otsu_inverse_released" for c in ("capsule", "screw")},
    **{c: "none" for c in (*sorted(TEXTURE_CATEGORIES), "transistor")},
    **{c: "grabcut_released" for c in VISA_CATEGORIES},
}
FOREGROUND_TABLES = {"rdexpert": DEFAULT_FOREGROUND, "released": RELEASED_FOREGROUND}


def foreground_method_for(category: str | None, override: str | None = None, table: str = "rdexpert") -> str:
    """Foreground method for ``category``: ``override`` if given, else the entry of ``table``
    (:data:`FOREGROUND_TABLES`; a category the released table lacks, i.e. outside MVTec AD and VisA,
    uses rdexpert's), else ``"auto"``."""
    if override is not None:
        _check_method(override)
        return override
    if category is None:
        return "auto"
    key = str(category).strip().lower()
    return FOREGROUND_TABLES[table].get(key) or DEFAULT_FOREGROUND.get(key, "auto")


def _check_method(method: str) -> None:
    if method not in FOREGROUND_METHODS:
        raise ValueError(
            f"unknown foreground method {method!r}; expected one of {FOREGROUND_METHODS}"
        )


# --------------------------------------------------------------------------
# Foreground masks
# --------------------------------------------------------------------------


def _as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return np.clip(img.astype(np.float32, copy=False), 0.0, 1.0)


def _gray_u8(img: np.ndarray) -> np.ndarray:
    u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)


def _otsu_bright(gray: np.ndarray) -> np.ndarray:
    """Pixels brighter than the Otsu threshold of a lightly blurred copy."""
    k = max(3, (min(gray.shape) // 100) | 1)
    blurred = cv2.GaussianBlur(gray, (k, k), 0)
    _, bright = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return bright > 0


def _clean(mask: np.ndarray) -> np.ndarray:
    """Morphological open (drop specks) then close (fill small gaps)."""
    k = max(3, int(round(0.02 * min(mask.shape))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    return m > 0


def _border_fraction(mask: np.ndarray) -> float:
    b = max(1, min(mask.shape) // 50)
    border = np.concatenate(
        [mask[:b].ravel(), mask[-b:].ravel(), mask[:, :b].ravel(), mask[:, -b:].ravel()]
    )
    return float(border.mean())


def _grabcut(img: np.ndarray, max_side: int = 160, iterations: int = 5) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) < 16:
        return np.ones((h, w), bool)
    scale = min(1.0, max_side / max(h, w))
    sh, sw = max(16, int(round(h * scale))), max(16, int(round(w * scale)))
    small = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    small = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
    my, mx = max(1, int(round(0.04 * sh))), max(1, int(round(0.04 * sw)))
    rect = (mx, my, sw - 2 * mx, sh - 2 * my)
    gc = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation uses OpenCV's RNG
    try:
        cv2.grabCut(small, gc, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return np.ones((h, w), bool)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST) > 0


def _released_mask(img: np.ndarray, method: str) -> np.ndarray:
    """The released code's masks: GrabCut, 11 iterations, at full size from a rectangle 1 px inside
    the top-left corner; or plain inverse Otsu on the grey image (no blur, no cleaning)."""
    u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if method == "otsu_inverse_released":
        _, dark = cv2.threshold(cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY), 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        return dark > 0
    h, w = img.shape[:2]
    gc = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(u8, gc, (1, 1, w - 1, h - 1), bgd, fgd, 11, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return np.ones((h, w), bool)
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)


def foreground_mask(image: np.ndarray, method: str = "auto") -> np.ndarray:
    """Bool ``HxW`` mask of the object in ``image`` (float32 RGB in [0, 1]).

    Methods:

    * ``"none"``: all True (textures).
    * ``"otsu"``: object brighter than the background.
    * ``"otsu_inverse"``: object darker than the background (thin dark objects
      such as screws and capsules).
    * ``"grabcut"``: ``cv2.grabCut`` from a rectangle 4% inside the border,
      5 iterations on a copy downscaled to 160 px, upscaled back.
    * ``"grabcut_released"``, ``"otsu_inverse_released"``: the released code's (:func:`_released_mask`).
    * ``"auto"``: Otsu on grayscale; the polarity whose foreground touches the
      image border least is the object; cleaned by open/close.  If it covers
      more than 85% or less than 3% of the image, or still covers more than
      25% of the border (both polarities reach the border: a pattern, not an
      object), the image is treated as a texture (all True).

    The result is never empty: an empty foreground becomes all True.
    """
    _check_method(method)
    img = _as_image(image)
    h, w = img.shape[:2]
    if method == "none":
        return np.ones((h, w), bool)
    if method == "grabcut":
        fg = _grabcut(img)
    elif method.endswith("_released"):
        fg = _released_mask(img, method)
    else:
        bright = _otsu_bright(_gray_u8(img))
        if method == "otsu":
            fg = _clean(bright)
        elif method == "otsu_inverse":
            fg = _clean(~bright)
        else:  # auto
            dark = ~bright
            fb, fd = _border_fraction(bright), _border_fraction(dark)
            if fb != fd:
                fg = bright if fb < fd else dark
            else:
                fg = bright if bright.mean() <= dark.mean() else dark
            fg = _clean(fg)
            cover = float(fg.mean())
            if cover > 0.85 or cover < 0.03 or _border_fraction(fg) > 0.25:
                return np.ones((h, w), bool)
    if not fg.any():
        return np.ones((h, w), bool)
    return fg


# --------------------------------------------------------------------------
# A category's method, chosen from its own training images
# --------------------------------------------------------------------------

#: What "auto" tries for a category the tables do not know, in order: Otsu (per image, cheap), then GrabCut.
AUTO_CANDIDATES = ("auto", "grabcut")
#: A method is trusted for a category only if, on every sampled training image, its mask covers this share
#: of the picture (a 3 % specular highlight or the whole frame is not an object) ...
AUTO_COVER = (0.10, 0.85)
#: ... and the covers agree from image to image (the same product is photographed the same way): the spread
#: (max - min) of the covers at most this share of their median.
AUTO_SPREAD = 0.35
AUTO_SAMPLE = 12  # training images the choice looks at


def choose_foreground(images: list[np.ndarray], candidates: tuple[str, ...] = AUTO_CANDIDATES) -> tuple[str, str]:
    """The foreground method for a category from its normal training images (HxWx3 RGB, as trained), and why.

    A method that does not know where the object is must not guess: the first candidate whose masks are
    plausible (:data:`AUTO_COVER`) and consistent (:data:`AUTO_SPREAD`) on every sampled image is chosen;
    when none is, ``"none"`` (anomalies anywhere), never a sliver or a different region per image.
    """
    chosen = [np.asarray(i) for i in images[:AUTO_SAMPLE]]
    if not chosen:
        return "none", "no training images to judge a foreground on: anomalies anywhere"
    tried = []
    for method in candidates:
        covers = np.array([float(foreground_mask(i, method).mean()) for i in chosen])
        low, high = float(covers.min()), float(covers.max())
        spread = (high - low) / max(float(np.median(covers)), 1e-6)
        if AUTO_COVER[0] <= low and high <= AUTO_COVER[1] and spread <= AUTO_SPREAD:
            return method, (f"{method}: object masks on all {len(chosen)} sampled training images, "
                            f"covering {100 * low:.0f}-{100 * high:.0f} % of the picture")
        tried.append(f"{method} covered {100 * low:.0f}-{100 * high:.0f} %")
    return "none", (f"no method found the object consistently ({'; '.join(tried)} of the picture on "
                    f"{len(chosen)} sampled images; wanted {100 * AUTO_COVER[0]:.0f}-{100 * AUTO_COVER[1]:.0f} %, "
                    f"spread ≤ {100 * AUTO_SPREAD:.0f} % of the median): anomalies anywhere")
