"""Shared fixtures: the real data shipped beside the repository, and a tiny checkpoint trained here.

Test modules take the fixtures by name; the few constants and helpers they also need
(``CATEGORY``, ``SIZE``, ``REPO``, ``SHA``, ``put_in_cache``, and the small image-file
helpers ``rgb_array``, ``box_mask``, ``save_image``, and for the synthesis tests
``disc_mask``, ``needs_mpdd``, ``needs_dtd``) are imported with
``from conftest import ...``, never from another test module.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MPDD = DATA / "mpdd"
DTD = DATA / "dtd" / "images"

# The tiny synthetic category that ``tiny_data`` / ``tiny_checkpoint`` are made of.
CATEGORY = "widget"
SIZE = 64

# A Hub repository and commit for checkpoints laid into a local Hugging Face cache (no network).
REPO = "acme/rdexpert-demo"
SHA = "0123456789abcdef0123456789abcdef01234567"


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


# -- small image files ---------------------------------------------------------------------------
def rgb_array(h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def box_mask(h=12, w=16, box=(2, 2, 6, 6)):
    m = np.zeros((h, w), np.uint8)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = 255
    return m


def save_image(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(path)
    return path


# -- the synthesis tests: a real image, skip marks, a disc mask -----------------------------------
needs_mpdd = pytest.mark.skipif(not (MPDD / "metal_plate").is_dir(), reason="shared data not found")
needs_dtd = pytest.mark.skipif(not DTD.is_dir(), reason="DTD textures not found")
TIRE = DATA / "mvtec3d_rgb" / "tire"  # a dark product on a dark, noisy background (issue 19)
needs_tire = pytest.mark.skipif(not TIRE.is_dir(), reason="MVTec 3D-AD tire not found")


def training_pictures(category_folder: Path, size: int = 128, count: int = 12) -> list[np.ndarray]:
    """The first ``count`` normal training images of a category, fitted as a padded model would train on them."""
    from rdexpert.data import fit_image, load_image

    files = sorted((category_folder / "train" / "good").iterdir())[:count]
    return [fit_image(load_image(f), size, "pad", padded=False) for f in files]


@pytest.fixture(scope="module")
def plate(mpdd_root) -> np.ndarray:
    """MPDD metal_plate ``train/good/train_00000.png``: float32 RGB in [0, 1], 128x128 (area resize)."""
    import cv2

    path = mpdd_root / "metal_plate" / "train" / "good" / "train_00000.png"
    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


def disc_mask(shape, radius) -> np.ndarray:
    """Bool ``HxW`` disc of ``radius`` px centred in the image."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= radius**2


# -- a tiny dataset and checkpoint ----------------------------------------------------------------
def _texture(rng: np.random.Generator, height: int = 72, width: int = 88) -> np.ndarray:
    coarse = rng.uniform(60, 190, size=(6, 7, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def make_dataset(root: Path) -> Path:
    """A tiny MVTec-layout category: smooth colour textures; defects are dark squares with masks. Non-square images."""
    rng = np.random.default_rng(0)
    cat = root / CATEGORY
    for folder in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
        (cat / folder).mkdir(parents=True)
    for i in range(6):
        Image.fromarray(_texture(rng)).save(cat / "train/good" / f"{i:03d}.png")
    for i in range(2):
        Image.fromarray(_texture(rng)).save(cat / "test/good" / f"{i:03d}.png")
        image, mask = _texture(rng), np.zeros((72, 88), np.uint8)
        mask[20:44, 30:60] = 255
        image[mask > 0] = 15
        Image.fromarray(image).save(cat / "test/defect" / f"{i:03d}.png")
        Image.fromarray(mask).save(cat / "ground_truth/defect" / f"{i:03d}_mask.png")
    return root


@contextlib.contextmanager
def _single_thread():
    """On a loaded 2-core machine two spinning OpenMP threads run ~10x slower than one; tiny models need one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with _single_thread():
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
    with _single_thread():
        return train(config, progress=False)


# -- a local Hugging Face cache -------------------------------------------------------------------
def put_in_cache(cache: Path, checkpoint: Path, repo_id: str = REPO, category: str = CATEGORY, sha: str = SHA,
                 ref: str = "main") -> Path:
    """The standard Hugging Face cache layout: models--ORG--NAME/{refs/REF, snapshots/SHA/CATEGORY/...}."""
    from rdexpert.checkpoint.folder import CONFIG_NAME, WEIGHTS_NAME
    from rdexpert.checkpoint.format import OOD_NAME

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(sha)
    folder = repo / "snapshots" / sha / category
    folder.mkdir(parents=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME, OOD_NAME):
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, folder / name)
    return folder


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
