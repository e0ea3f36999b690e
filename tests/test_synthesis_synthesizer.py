"""Tests for rdexpert.synthesis.synthesizer: the blend and AnomalySynthesizer."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import DTD, disc_mask, needs_dtd, needs_mpdd

from rdexpert.synthesis import AnomalySynthesizer, SyntheticAnomaly, foreground_mask


def _constant_texture_dir(tmp_path: Path, rgb=(200, 30, 90)) -> Path:
    folder = tmp_path / "textures" / "flat"
    folder.mkdir(parents=True)
    img = np.zeros((40, 50, 3), np.uint8)
    img[:] = rgb[::-1]  # cv2 writes BGR
    cv2.imwrite(str(folder / "flat.png"), img)
    return tmp_path / "textures"


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


@needs_mpdd
def test_masks_inside_foreground_real_image(plate):
    synth = AnomalySynthesizer(None, "auto")
    fg_auto = foreground_mask(plate, "auto")
    disc = disc_mask(plate.shape[:2], 20)
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
