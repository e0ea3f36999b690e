"""Tests for rdexpert.synthesis.perlin: Perlin noise and the anomaly masks made from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import disc_mask

from rdexpert.synthesis import perlin_mask, perlin_noise

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
    fg = disc_mask((128, 128), 25)
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
