"""Tests for rdexpert.synthesis.foreground: the per-category table and foreground masks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_mpdd

from rdexpert.synthesis import (
    DEFAULT_FOREGROUND,
    TEXTURE_CATEGORIES,
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
