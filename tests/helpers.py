"""Plain helpers the test modules share: constants, data locations, skip marks, small file makers.

Why this module exists: pytest fixtures live in ``conftest.py`` and are taken by name, but constants
and functions are imported, and importing ``conftest`` as a module (``from conftest import ...``)
reaches into pytest's plugin machinery. They live here instead, importable the same way (pytest puts
``tests/`` on ``sys.path`` because it has no ``__init__.py``): ``from helpers import CATEGORY, SIZE``.
A test module imports from here or takes fixtures, never from another test module.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# -- the real data shipped beside the repository --------------------------------------------------
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MPDD = DATA / "mpdd"
DTD = DATA / "dtd" / "images"
TIRE = DATA / "mvtec3d_rgb" / "tire"  # a dark product on a dark, noisy background

needs_mpdd = pytest.mark.skipif(not (MPDD / "metal_plate").is_dir(), reason="shared data not found")
needs_dtd = pytest.mark.skipif(not DTD.is_dir(), reason="DTD textures not found")
needs_tire = pytest.mark.skipif(not TIRE.is_dir(), reason="MVTec 3D-AD tire not found")

# The tiny synthetic category that the ``tiny_data`` / ``tiny_checkpoint`` fixtures are made of.
CATEGORY = "widget"
SIZE = 64

# A Hub repository and commit for checkpoints laid into a local Hugging Face cache (no network).
REPO = "acme/rdexpert-demo"
SHA = "0123456789abcdef0123456789abcdef01234567"


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


# -- the synthesis tests: real pictures, a disc mask ----------------------------------------------
def training_pictures(category_folder: Path, size: int = 128, count: int = 12) -> list[np.ndarray]:
    """The first ``count`` normal training images of a category, fitted as a padded model would train on them."""
    from rdexpert.data import fit_image, load_image

    files = sorted((category_folder / "train" / "good").iterdir())[:count]
    return [fit_image(load_image(f), size, "pad", padded=False) for f in files]


def disc_mask(shape, radius) -> np.ndarray:
    """Bool ``HxW`` disc of ``radius`` px centred in the image."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= radius**2


# -- a tiny dataset -------------------------------------------------------------------------------
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
def single_thread():
    """On a loaded 2-core machine two spinning OpenMP threads run ~10x slower than one; tiny models need one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- checkpoints ----------------------------------------------------------------------------------
def with_input_fit(checkpoint: Path, fit: str):
    """A Predictor of the checkpoint's model and calibration, scored with the given ``input_fit``."""
    from rdexpert.checkpoint.folder import load_checkpoint
    from rdexpert.inference.predictor import Predictor

    model, config = load_checkpoint(checkpoint, map_location="cpu")
    model.config = replace(model.config, input_fit=fit)
    return Predictor(model, config, "cpu")


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
