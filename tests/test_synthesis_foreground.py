"""Tests for rdexpert.synthesis.foreground: the per-category table and foreground masks."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TIRE, needs_mpdd, needs_tire, training_pictures

from rdexpert.synthesis import (
    DEFAULT_FOREGROUND,
    TEXTURE_CATEGORIES,
    choose_foreground,
    foreground_mask,
    foreground_method_for,
)


@needs_mpdd
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


@needs_tire
def test_auto_foreground_per_image_fails_on_tire_but_the_category_choice_finds_the_tire():
    """Per-image Otsu gives the whole frame on some tire images and a 3-4 % specular highlight on
    others; the category-level choice refuses it and finds the tread with GrabCut, the same on every image."""
    pictures = training_pictures(TIRE)
    covers = [foreground_mask(p, "auto").mean() for p in pictures]
    assert max(covers) == 1.0 and min(covers) < 0.05  # the failure: whole frame here, a sliver there
    method, reason = choose_foreground(pictures)
    assert method == "grabcut" and "grabcut" in reason
    tread = [foreground_mask(p, method).mean() for p in pictures]
    assert 0.2 < min(tread) and max(tread) < 0.5


@needs_mpdd
def test_category_choice_keeps_a_foreground_that_works(mpdd_root):
    method, _ = choose_foreground(training_pictures(mpdd_root / "metal_plate"))
    assert method == "auto"  # Otsu finds the plate on every sampled image


def test_category_choice_says_none_when_no_method_finds_an_object():
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(4)]  # no object anywhere
    method, reason = choose_foreground(noise)
    assert method == "none" and "anomalies anywhere" in reason
    assert choose_foreground([])[0] == "none"
