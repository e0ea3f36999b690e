"""Tests for rdexpert.data.images: decoding image and mask files robustly, and fitting them to the square input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CATEGORY, box_mask, rgb_array, save_image
from PIL import Image

from rdexpert.data import ImageDataset, SyntheticAnomalyDataset, list_samples
from rdexpert.data.images import (
    ContentBox,
    ImageLoadError,
    content_box,
    fit_image,
    fit_mask,
    image_to_tensor,
    load_image,
    load_mask,
    mask_to_tensor,
    resize_image,
    to_rgb,
)
from rdexpert.synthesis import AnomalySynthesizer


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


# --------------------------------------------------------------------------- fitting to the square input
RED, BLUE = (200, 10, 10), (10, 10, 200)


def _halves(height: int = 20, width: int = 40) -> np.ndarray:
    """Top half red, bottom half blue."""
    image = np.empty((height, width, 3), np.uint8)
    image[: height // 2], image[height // 2 :] = RED, BLUE
    return image


def test_a_40_wide_20_high_image_padded_to_32():
    # the longer side 40 -> 32, so 20 -> 16 rows, centred: (32 - 16) // 2 = 8 rows of padding above and below
    assert content_box(20, 40, 32, "pad") == ContentBox(top=8, left=0, height=16, width=32)
    assert content_box(40, 20, 32, "pad") == ContentBox(top=0, left=8, height=32, width=16)
    assert content_box(20, 40, 32, "squash") == content_box(20, 20, 32, "pad") == ContentBox(0, 0, 32, 32)
    padded = fit_image(_halves(), 32, "pad")
    assert padded.shape == (32, 32, 3) and padded.dtype == np.uint8
    # edge fill: rows 0-7 repeat the picture's first row (red), rows 24-31 its last row (blue)
    assert (padded[:9] == RED).all() and (padded[23:] == BLUE).all()
    picture = fit_image(_halves(), 32, "pad", padded=False)
    assert picture.shape == (16, 32, 3) and np.array_equal(picture, padded[8:24])
    assert np.array_equal(ContentBox(8, 0, 16, 32).crop(padded), picture)
    with pytest.raises(ValueError, match="unknown input fit 'stretch'"):
        fit_image(_halves(), 32, "stretch")


def test_a_mask_is_padded_like_its_image_with_zeros():
    mask = np.zeros((20, 40), bool)
    mask[10:, :20] = True  # bottom-left quarter
    fitted = fit_mask(mask, 32, "pad")
    # rows 10-19 of 20 -> rows 8-15 of the 16-row picture -> rows 16-23 of the square; columns 0-19 -> 0-15
    expected = np.zeros((32, 32), bool)
    expected[16:24, :16] = True
    assert np.array_equal(fitted, expected)
    # a mask stored at twice the image's resolution lands on the image's pixels when given its box
    double = np.kron(mask, np.ones((2, 2), bool))
    assert np.array_equal(fit_mask(double, 32, "pad", content_box(20, 40, 32, "pad")), expected)
    assert np.array_equal(mask_to_tensor(mask, 32, "pad")[0].numpy(), expected.astype(np.float32))


def test_a_map_cropped_back_has_the_original_aspect_ratio():
    anomaly_map = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    back = content_box(20, 40, 32, "pad").crop(anomaly_map)
    assert back.shape == (16, 32) and back.shape[1] / back.shape[0] == 40 / 20
    assert back[0, 0] == anomaly_map[8, 0] and back.max() == anomaly_map[23, 31]  # rows 8-23, never the padding


def test_for_a_square_image_pad_is_squash_bit_for_bit(mpdd_root):
    plate = load_image(mpdd_root / "metal_plate" / "test" / "defect" / "test_00026.png")  # 512 x 512
    assert plate.shape == (512, 512, 3)
    assert np.array_equal(fit_image(plate, 64, "pad"), resize_image(plate, 64))
    assert torch.equal(image_to_tensor(plate, 64, "pad"), image_to_tensor(plate, 64, "squash"))
    mask = plate[..., 0] > 128
    assert torch.equal(mask_to_tensor(mask, 64, "pad"), mask_to_tensor(mask, 64, "squash"))


def test_datasets_pad_images_masks_and_synthetic_anomalies(tiny_data):
    """The tiny category's 88 x 72 images at 64 px: 64 x 52 pictures, 6 rows of padding above and below."""
    box = [6, 0, 52, 64]  # 72 * 64 / 88 = 52.4 -> 52 rows, (64 - 52) // 2 = 6
    test = list_samples(tiny_data, CATEGORY, "test")
    defect = next(i for i, s in enumerate(test) if s.label == 1)
    item = ImageDataset(test, 64, fit="pad")[defect]
    assert item["box"].tolist() == box
    image, mask = item["image"], item["mask"][0]
    assert torch.equal(image[:, :6], image[:, 6:7].expand(-1, 6, -1))  # edge fill
    assert mask[:6].sum() == 0 and mask[58:].sum() == 0 and mask.sum() > 0  # the defect, never the padding
    assert ImageDataset(test, 64, fit="squash")[defect]["box"].tolist() == [0, 0, 64, 64]  # squash: the whole square

    train = list_samples(tiny_data, CATEGORY, "train")
    synthetic = SyntheticAnomalyDataset(train, 64, AnomalySynthesizer(foreground="none"), seed=3, fit="pad")
    items = [synthetic[i] for i in range(len(train))]
    assert all(it["box"].tolist() == box for it in items) and any(it["label"] == 1 for it in items)
    for it in items:
        assert it["augmented"].shape == (3, 64, 64) and it["mask"].shape == (1, 64, 64)
        assert it["mask"][0, :6].sum() == 0 and it["mask"][0, 58:].sum() == 0
        for key in ("image", "augmented"):  # a defect at the picture's edge is repeated into the padding too
            assert torch.equal(it[key][:, :6], it[key][:, 6:7].expand(-1, 6, -1))
            assert torch.equal(it[key][:, 58:], it[key][:, 57:58].expand(-1, 6, -1))


def test_tiny_and_nan_images_are_refused_at_every_entry_point(tmp_path):
    """A 1 x 1 file, PIL image or array, and a float image holding NaN, are refused, never scored as a flat colour."""
    from PIL import Image

    from rdexpert.data import MIN_SIDE, ImageLoadError, NotAPicture, load_image, to_rgb

    tiny = save_image(tmp_path / "1x1.png", rgb_array(1, 1))
    with pytest.raises(ImageLoadError, match=r"1x1\.png.*at least 2 x 2 pixels"):
        load_image(tiny)
    with pytest.raises(NotAPicture, match="at least"):
        to_rgb(Image.new("RGB", (1, 1)))
    with pytest.raises(NotAPicture, match="at least"):
        to_rgb(rgb_array(1, 1))
    nan = np.full((16, 16), np.nan, np.float32)
    with pytest.raises(NotAPicture, match="finite"):
        to_rgb(Image.fromarray(nan, mode="F"))
    Image.fromarray(nan, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageLoadError, match=r"nan\.tif.*finite"):
        load_image(tmp_path / "nan.tif")
    smallest = save_image(tmp_path / "ok.png", rgb_array(MIN_SIDE, MIN_SIDE))
    assert load_image(smallest).shape == (MIN_SIDE, MIN_SIDE, 3)
