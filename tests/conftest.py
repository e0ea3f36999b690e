"""Shared fixtures: the real data shipped beside the repository, and a tiny checkpoint trained here.

Test modules take these fixtures by name. Constants and plain helpers (``CATEGORY``, ``SIZE``,
``put_in_cache``, skip marks, small image-file makers ...) live in ``helpers.py`` and are imported
with ``from helpers import ...``, never from this file or from another test module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import CATEGORY, DTD, MPDD, SIZE, make_dataset, single_thread


@pytest.fixture(scope="session")
def mpdd_root() -> Path:
    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"real data not found at {MPDD}")
    return MPDD


@pytest.fixture(scope="session")
def dtd_root() -> Path:
    if not DTD.is_dir():
        pytest.skip(f"DTD textures not found at {DTD}")
    return DTD


@pytest.fixture(scope="module")
def plate(mpdd_root) -> np.ndarray:
    """MPDD metal_plate ``train/good/train_00000.png``: float32 RGB in [0, 1], 128x128 (area resize)."""
    import cv2

    path = mpdd_root / "metal_plate" / "train" / "good" / "train_00000.png"
    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data, tmp_path_factory) -> Path:
    """2 iterations of the real training loop, EfficientNet-Lite0 with its offline ImageNet weights, 64 px.

    Trained once per session and shared: tests that change a checkpoint work on a copy.
    """
    from rdexpert.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt") / CATEGORY
    config = TrainConfig(data_root=str(tiny_data), category=CATEGORY, out=str(out), iterations=2, image_size=SIZE, recipe_set={"input_fit": "pad"},
                         batch_size=2, device="cpu", num_workers=0, foreground="none", save_every=1000)
    with single_thread():
        return train(config, progress=False)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache that huggingface_hub uses, in offline mode (constants are read at import, so patch them)."""
    import huggingface_hub

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
