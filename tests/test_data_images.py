"""Tests for rdexpert.data.images: decoding image and mask files robustly."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import box_mask, rgb_array, save_image
from PIL import Image

from rdexpert.data.images import ImageLoadError, load_image, load_mask, to_rgb


# --------------------------------------------------------------------------- image loading
def test_load_image_modes(tmp_path):
    rgb = rgb_array()
    out = load_image(save_image(tmp_path / "rgb.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3) and np.array_equal(out, rgb)

    gray = rgb[..., 0]
    out = load_image(save_image(tmp_path / "gray.png", gray))
    assert out.shape == (12, 16, 3) and np.array_equal(out[..., 1], gray)

    rgba = np.dstack([rgb, np.full((12, 16), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    out = load_image(save_image(tmp_path / "rgba.png", rgba))
    assert out.shape == (12, 16, 3)
    assert np.array_equal(out[1:], rgb[1:]) and (out[0, 0] == 0).all()  # composited on black

    la = np.dstack([gray, np.full((12, 16), 255, np.uint8)])
    out = load_image(save_image(tmp_path / "la.png", la, "LA"))
    assert out.shape == (12, 16, 3) and np.array_equal(out[..., 0], gray)

    g16 = (np.arange(12 * 16).reshape(12, 16) * 300).astype(np.uint16)
    p16 = tmp_path / "g16.png"
    Image.fromarray(g16).save(p16)
    out = load_image(p16)
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    assert np.abs(out[..., 0].astype(int) - np.round(g16 / 257).astype(int)).max() <= 1

    import cv2

    c16 = np.zeros((12, 16, 3), np.uint16)
    c16[..., 2] = 65535  # red in BGR
    cv2.imwrite(str(tmp_path / "c16.tif"), c16)
    out = load_image(tmp_path / "c16.tif")
    assert out.shape == (12, 16, 3) and out[0, 0, 0] >= 254 and out[0, 0, 2] == 0

    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.save(tmp_path / "pal.png")
    out = load_image(tmp_path / "pal.png")
    assert out.shape == (12, 16, 3) and np.array_equal(out, np.asarray(pal.convert("RGB")))

    Image.fromarray(rgb).save(tmp_path / "img.JPG", quality=95)
    assert load_image(tmp_path / "img.JPG").shape == (12, 16, 3)


def test_load_image_errors(tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match="corrupt.png"):
        load_image(bad)
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.txt"):
        load_image(txt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.png"):
        load_image(empty)
    # truncated PNG: valid header, missing data
    good = save_image(tmp_path / "full.png", rgb_array(64, 64))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageLoadError, match="trunc.png"):
        load_image(trunc)
    with pytest.raises(ImageLoadError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    assert issubclass(ImageLoadError, ValueError)


def test_large_image_downscaled_and_bomb_refused(tmp_path, monkeypatch):
    p = save_image(tmp_path / "big.png", rgb_array(200, 300))
    out = load_image(p, max_pixels=10_000)
    assert out.shape[0] * out.shape[1] <= 10_000 and out.shape[2] == 3
    assert abs(out.shape[1] / out.shape[0] - 1.5) < 0.1
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's bomb limit = 2x this
    with pytest.raises(ImageLoadError, match="big.png"):
        load_image(p)


def test_load_mask_variants(tmp_path):
    m = box_mask()
    assert load_mask(save_image(tmp_path / "m.png", m)).sum() == 16
    m01 = (m > 0).astype(np.uint8)  # {0,1} masks
    assert load_mask(save_image(tmp_path / "m01.png", m01)).sum() == 16
    col = np.zeros((12, 16, 3), np.uint8)
    col[2:6, 2:6, 1] = 255  # green only
    assert load_mask(save_image(tmp_path / "mc.png", col)).sum() == 16
    # LOCO-style folder of parts: merged
    d = tmp_path / "loco_mask"
    save_image(d / "000.png", box_mask(box=(0, 0, 2, 2)))
    save_image(d / "001.png", box_mask(box=(10, 10, 12, 12)))
    assert load_mask(d).sum() == 8


# --------------------------------------------------------------------------- in-memory arrays
def test_to_rgb_refuses_arrays_that_are_no_picture(mpdd_root):
    """NaN, inf, complex, object, 0x0 and 1x1 used to come out as a black image and be scored as one."""
    real = load_image(mpdd_root / "metal_plate" / "test" / "good" / "test_00000.png")
    plate = real.astype(np.float32) / 255.0
    assert np.array_equal(to_rgb(plate), real)  # a finite float image still converts like a file
    with_nan = plate.copy()
    with_nan[10, 10, 0] = np.nan
    with pytest.raises(ValueError, match="finite values; got 1 NaN and 0 infinite"):
        to_rgb(with_nan)
    with_inf = plate.copy()
    with_inf[0, :, 1] = np.inf
    with pytest.raises(ValueError, match=f"0 NaN and {plate.shape[1]} infinite"):
        to_rgb(with_inf)
    with pytest.raises(ValueError, match="complex values"):
        to_rgb(plate.astype(np.complex64))
    with pytest.raises(ValueError, match="got dtype object"):
        to_rgb(real.astype(object))
    with pytest.raises(ValueError, match="got dtype <U"):
        to_rgb(np.array([["a", "b"], ["c", "d"]]))
    for empty in (np.zeros((0, 0), np.uint8), np.zeros((0, 0, 3), np.uint8), real[:1, :1], real[:1, :, 0]):
        with pytest.raises(ValueError, match=r"at least 2 x 2 pixels; got \d+ x \d+"):
            to_rgb(empty)
    with pytest.raises(ValueError, match="got 1 x 1"):
        to_rgb(Image.fromarray(real[:1, :1]))
    assert to_rgb(real[:2, :2]).shape == (2, 2, 3)
