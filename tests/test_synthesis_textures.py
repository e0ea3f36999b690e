"""Tests for rdexpert.synthesis.textures: texture folders (DTD) and procedural textures."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from helpers import DTD, needs_dtd

from rdexpert.synthesis import AnomalySynthesizer, TextureSource


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
