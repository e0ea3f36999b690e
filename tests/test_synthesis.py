"""Tests for rdexpert.synthesis (DRAEM-style synthetic anomalies)."""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from rdexpert.synthesis import (
    DEFAULT_FOREGROUND,
    TEXTURE_CATEGORIES,
    AnomalySynthesizer,
    SyntheticAnomaly,
    TextureSource,
    foreground_mask,
    foreground_method_for,
    perlin_mask,
    perlin_noise,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PLATE = DATA / "mpdd" / "metal_plate"
DTD = DATA / "dtd" / "images"

needs_data = pytest.mark.skipif(not PLATE.is_dir(), reason="shared data not found")
needs_dtd = pytest.mark.skipif(not DTD.is_dir(), reason="DTD textures not found")


def _load(path: Path, size: int = 128) -> np.ndarray:
    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def plate() -> np.ndarray:
    if not PLATE.is_dir():
        pytest.skip("shared data not found")
    return _load(PLATE / "train" / "good" / "train_00000.png")


def _disc(shape, radius) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= radius**2


def _constant_texture_dir(tmp_path: Path, rgb=(200, 30, 90)) -> Path:
    folder = tmp_path / "textures" / "flat"
    folder.mkdir(parents=True)
    img = np.zeros((40, 50, 3), np.uint8)
    img[:] = rgb[::-1]  # cv2 writes BGR
    cv2.imwrite(str(folder / "flat.png"), img)
    return tmp_path / "textures"


# ---------------------------------------------------------------- Perlin noise


def test_perlin_noise_range_and_lattice():
    rng = np.random.default_rng(0)
    noise = perlin_noise((100, 70), (8, 4), rng)
    assert noise.shape == (100, 70) and noise.dtype == np.float32
    assert np.abs(noise).max() <= math.sqrt(0.5) + 1e-6
    assert noise.std() > 0.05
    # Period: cells of ceil(100/8)=13 x ceil(70/4)=18 px; the noise is 0 on the lattice.
    assert np.all(noise[::13, ::18] == 0)
    assert np.count_nonzero(noise == 0) < noise.size // 20


def test_perlin_noise_non_divisible_is_crop_of_padded():
    a = perlin_noise((100, 70), (8, 4), np.random.default_rng(3))
    b = perlin_noise((104, 72), (8, 4), np.random.default_rng(3))
    np.testing.assert_allclose(a, b[:100, :70], atol=1e-6)


def test_perlin_noise_scale_controls_smoothness():
    rng = np.random.default_rng(1)
    coarse = perlin_noise((128, 128), (2, 2), rng)
    fine = perlin_noise((128, 128), (32, 32), rng)
    rough = lambda n: np.abs(np.diff(n, axis=1)).mean() / n.std()  # noqa: E731
    assert rough(fine) > 4 * rough(coarse)


@pytest.mark.parametrize("bad", [(0, 4), (4, -1)])
def test_perlin_noise_rejects_bad_res(bad):
    with pytest.raises(ValueError):
        perlin_noise((32, 32), bad, np.random.default_rng(0))


# ---------------------------------------------------------------- Perlin masks


def test_perlin_mask_binary_and_non_empty():
    for seed in range(15):
        m = perlin_mask((128, 96), np.random.default_rng(seed))
        assert m.shape == (128, 96) and m.dtype == np.float32
        assert set(np.unique(m)) <= {0.0, 1.0}
        assert m.sum() > 0


def test_perlin_mask_inside_foreground():
    fg = _disc((128, 128), 25)
    for seed in range(10):
        m = perlin_mask((128, 128), np.random.default_rng(seed), fg)
        assert m.sum() > 0
        assert not np.any(m.astype(bool) & ~fg)


def test_perlin_mask_fallback_ellipse_inside_tiny_foreground():
    fg = np.zeros((64, 64), bool)
    fg[30:32, 40:42] = True
    for seed in range(5):
        # max_tries=0 forces the ellipse fallback
        m = perlin_mask((64, 64), np.random.default_rng(seed), fg, max_tries=0)
        assert m.sum() > 0 and not np.any(m.astype(bool) & ~fg)
    m = perlin_mask((64, 64), np.random.default_rng(0), np.zeros((64, 64), bool))
    assert m.sum() > 0  # an empty foreground means the whole image


def test_perlin_mask_rotation_is_applied():
    a = perlin_mask((96, 96), np.random.default_rng(5), rotate=False)
    b = perlin_mask((96, 96), np.random.default_rng(5), rotate=True)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- foreground


@needs_data
def test_foreground_methods_on_metal_plate(plate):
    h, w = plate.shape[:2]
    auto = foreground_mask(plate, "auto")
    assert auto.dtype == bool and auto.shape == (h, w)
    assert 0.1 < auto.mean() < 0.6  # the plate, not the background
    assert auto[:3].mean() < 0.05 and auto[-3:].mean() < 0.05
    inv = foreground_mask(plate, "otsu_inverse")
    np.testing.assert_array_equal(auto, inv)  # dark plate on a light background
    assert (foreground_mask(plate, "otsu") & inv).mean() < 0.02
    assert foreground_mask(plate, "none").all()
    gc = foreground_mask(plate, "grabcut")
    iou = (gc & auto).sum() / (gc | auto).sum()
    assert iou > 0.6


def test_auto_foreground_treats_textures_as_whole_image():
    flat = np.full((64, 64, 3), 0.4, np.float32)
    assert foreground_mask(flat, "auto").all()
    yy, xx = np.mgrid[0:96, 0:96]
    checker = (((yy // 12) + (xx // 12)) % 2).astype(np.float32)
    assert foreground_mask(np.repeat(checker[..., None], 3, 2), "auto").all()


def test_foreground_mask_rejects_unknown_method():
    with pytest.raises(ValueError, match="foreground method"):
        foreground_mask(np.zeros((8, 8, 3), np.float32), "magic")


def test_foreground_method_table():
    assert foreground_method_for("screw") == "otsu_inverse"
    assert foreground_method_for("capsule") == "otsu_inverse"
    assert foreground_method_for("Carpet") == "none"
    assert foreground_method_for("my_new_part") == "auto"
    assert foreground_method_for(None) == "auto"
    assert foreground_method_for("screw", override="grabcut") == "grabcut"
    with pytest.raises(ValueError):
        foreground_method_for("screw", override="bogus")
    assert all(DEFAULT_FOREGROUND[c] == "none" for c in TEXTURE_CATEGORIES)
    assert set(TEXTURE_CATEGORIES) == {"carpet", "grid", "leather", "tile", "wood"}


# ---------------------------------------------------------------- textures


@needs_dtd
def test_dtd_texture_source():
    src = TextureSource(DTD, cache_size=4)
    assert len(src) >= 10 and not src.procedural
    rng = np.random.default_rng(0)
    for _ in range(8):
        tex = src.sample(rng, (96, 80))
        assert tex.shape == (96, 80, 3) and tex.dtype == np.float32
        assert 0.0 <= tex.min() and tex.max() <= 1.0 and tex.std() > 0
    assert len(src._cache) <= 4  # bounded LRU


def test_texture_folder_formats(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    gray = np.full((20, 30), 128, np.uint8)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 255  # red (BGRA) and opaque
    cv2.imwrite(str(tmp_path / "a" / "gray.PNG"), gray)
    cv2.imwrite(str(tmp_path / "a" / "b" / "rgba.png"), rgba)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    src = TextureSource(tmp_path)
    assert len(src) == 2
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(12):
        tex = src.sample(rng, (16, 16))
        assert tex.shape == (16, 16, 3)
        seen.add(tuple(np.round(tex[0, 0], 2)))
    assert (1.0, 0.0, 0.0) in seen  # RGBA red came out as RGB red
    assert (0.5, 0.5, 0.5) in seen  # grayscale became 3-channel


def test_texture_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        TextureSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "empty"))):
        TextureSource(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        AnomalySynthesizer(textures=tmp_path / "missing")


def test_procedural_textures():
    src = TextureSource(None)
    assert src.procedural
    rng = np.random.default_rng(0)
    for _ in range(12):
        tex = src.sample(rng, (64, 48))
        assert tex.shape == (64, 48, 3) and tex.dtype == np.float32
        assert 0.0 <= tex.min() and tex.max() <= 1.0 and tex.std() > 0.005


# ---------------------------------------------------------------- synthesizer


def test_blend_follows_formula(tmp_path):
    rgb = (200, 30, 90)
    synth = AnomalySynthesizer(_constant_texture_dir(tmp_path, rgb), "none", augment_textures=False)
    rng = np.random.default_rng(7)
    img = rng.uniform(0, 1, (64, 64, 3)).astype(np.float32)
    for _ in range(5):
        out = synth(img, rng)
        assert isinstance(out, SyntheticAnomaly)
        tex = np.broadcast_to(np.array(rgb, np.float32) / 255.0, img.shape)
        np.testing.assert_allclose(out.texture, tex, atol=1e-6)
        assert 0.0 <= out.beta <= 0.8
        m, b = out.mask[..., None], out.beta
        expected = np.clip(img * (1 - m) + (1 - b) * tex * m + b * img * m, 0, 1)
        np.testing.assert_allclose(out.image, expected, atol=1e-5)
        assert out.image.dtype == np.float32 and out.image.shape == img.shape
        np.testing.assert_array_equal(out.image[out.mask == 0], img[out.mask == 0])


def test_blend_with_augmented_textures_uses_returned_texture(plate):
    synth = AnomalySynthesizer(None, "auto")
    rng = np.random.default_rng(11)
    for _ in range(4):
        out = synth(plate, rng)
        m, b = out.mask[..., None], out.beta
        expected = np.clip(plate * (1 - m) + (1 - b) * out.texture * m + b * plate * m, 0, 1)
        np.testing.assert_allclose(out.image, expected, atol=1e-5)


@needs_data
def test_masks_inside_foreground_real_image(plate):
    synth = AnomalySynthesizer(None, "auto")
    fg_auto = foreground_mask(plate, "auto")
    disc = _disc(plate.shape[:2], 20)
    rng = np.random.default_rng(3)
    for fg in (fg_auto, disc, None):
        for _ in range(3):
            out = synth(plate, rng, foreground=fg)
            allowed = fg_auto if fg is None else fg
            assert out.mask.sum() > 0
            assert set(np.unique(out.mask)) <= {0.0, 1.0}
            assert not np.any(out.mask.astype(bool) & ~allowed)


@pytest.mark.parametrize("textures", [None, pytest.param(DTD, marks=needs_dtd)])
def test_determinism(plate, textures):
    synth = AnomalySynthesizer(textures, "auto")
    fg = synth.foreground_mask(plate)
    a = synth(plate, np.random.default_rng(42), fg)
    b = synth(plate, np.random.default_rng(42), fg)
    c = synth(plate, np.random.default_rng(43), fg)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.beta == b.beta
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.mask, c.mask)


@needs_dtd
def test_pickle_round_trip(plate):
    synth = AnomalySynthesizer.for_category("metal_plate", DTD)
    assert synth.foreground == "otsu_inverse"
    synth(plate, np.random.default_rng(0))  # fills the texture cache
    clone = pickle.loads(pickle.dumps(synth))
    assert len(clone.textures._cache) == 0
    a = synth(plate, np.random.default_rng(9))
    b = clone(plate, np.random.default_rng(9))
    np.testing.assert_array_equal(a.image, b.image)


def test_input_validation():
    synth = AnomalySynthesizer()
    with pytest.raises(ValueError):
        synth(np.zeros((32, 32), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        synth(np.zeros((32, 32, 3), np.float32), np.random.default_rng(0), np.ones((16, 16), bool))
    with pytest.raises(ValueError):
        AnomalySynthesizer(foreground="bogus")
    out = synth(np.full((32, 32, 3), 128, np.uint8), np.random.default_rng(0))
    assert out.image.dtype == np.float32 and out.image.max() <= 1.0
