"""Derived categories for the robustness suite, built from ../shared/data into bench/runs/data.

metal_plate under conditions that mimic other products, and texture "categories" made from DTD:

* ``plain``      metal_plate renamed (unknown category -> automatic foreground), unchanged pixels
* ``dark``       pixels scaled to a dark product (x * 0.25, gamma 1.6), as a dark rubber part
* ``grey``       single-channel grey images (saved as L-mode PNG)
* ``nonsquare``  4:3 crops (512 x 384), squashed to a square by the loader like 800 x 600 images
* ``dtd_<normal>_<other>``  normal = one DTD class; defects = patches of another class pasted
  with Perlin masks (the masks are the ground truth)

Nothing is written outside ``bench/runs/data``; ../shared is only read.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "runs" / "data"
METAL = SHARED / "mpdd" / "metal_plate"
CONDITIONS = ("plain", "dark", "grey", "nonsquare")


def _transform(condition: str, image: Image.Image, is_mask: bool) -> Image.Image:
    if condition == "nonsquare":
        w, h = image.size
        top = (h - h * 3 // 4) // 2
        return image.crop((0, top, w, top + h * 3 // 4))
    if is_mask or condition == "plain":
        return image
    if condition == "grey":
        return image.convert("L")
    if condition == "dark":
        x = np.asarray(image.convert("RGB"), np.float32) / 255.0
        x = 0.25 * np.power(x, 1.6)
        return Image.fromarray((x * 255 + 0.5).astype(np.uint8))
    raise ValueError(condition)


def build_metal(condition: str) -> Path:
    """bench/runs/data/<condition>/plate/...: MVTec layout, category name unknown to the foreground table."""
    dest = OUT / condition / "plate"
    if (dest / ".complete").is_file():
        return dest.parent
    shutil.rmtree(dest, ignore_errors=True)
    for src in sorted(METAL.rglob("*.png")):
        rel = src.relative_to(METAL)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _transform(condition, Image.open(src), "ground_truth" in rel.parts).save(target)
    (dest / ".complete").touch()
    return dest.parent


def derive(source: Path, name: str, conditions: tuple[str, ...]) -> Path:
    """bench/runs/data/<name>/<name>: a copy of the MVTec-layout category ``source`` with ``conditions`` applied in order."""
    dest = OUT / name / name
    if (dest / ".complete").is_file():
        return dest.parent
    shutil.rmtree(dest, ignore_errors=True)
    for src in sorted(source.rglob("*.png")):
        rel = src.relative_to(source)
        image = Image.open(src)
        for condition in conditions:
            image = _transform(condition, image, "ground_truth" in rel.parts)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(dest / rel)
    (dest / ".complete").touch()
    return dest.parent


def build_dtd(normal: str, other: str, n_test_good: int = 20, n_defect: int = 20, seed: int = 0) -> Path:
    """A texture category: train/good and test/good from ``normal``, test/defect with ``other`` pasted in."""
    from rdexpert.synthesis import perlin_mask

    name = f"dtd_{normal}_{other}"
    dest = OUT / name / name
    if (dest / ".complete").is_file():
        return dest.parent
    shutil.rmtree(dest, ignore_errors=True)
    rng = np.random.default_rng(seed)
    size = 256
    load = lambda p: np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255  # noqa: E731
    normals = sorted((SHARED / "dtd" / "images" / normal).glob("*.jpg"))
    others = sorted((SHARED / "dtd" / "images" / other).glob("*.jpg"))
    test_good = normals[:n_test_good]
    defect_base = normals[n_test_good:n_test_good + n_defect]
    train = normals[n_test_good + n_defect:]
    for folder, files in (("train/good", train), ("test/good", test_good)):
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for p in files:
            Image.fromarray((load(p) * 255 + 0.5).astype(np.uint8)).save(dest / folder / f"{p.stem}.png")
    (dest / "test/defect").mkdir(parents=True)
    (dest / "ground_truth/defect").mkdir(parents=True)
    for i, p in enumerate(defect_base):
        x = load(p)
        mask = perlin_mask((size, size), rng, min_scale=1, max_scale=4)
        patch = load(others[int(rng.integers(len(others)))])
        y = x * (1 - mask[..., None]) + patch * mask[..., None]
        Image.fromarray((y * 255 + 0.5).astype(np.uint8)).save(dest / "test/defect" / f"{i:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(dest / "ground_truth/defect" / f"{i:03d}_mask.png")
    (dest / ".complete").touch()
    return dest.parent


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    for c in CONDITIONS:
        print(c, build_metal(c))
    print(build_dtd("banded", "cracked"))
    print(build_dtd("bubbly", "cracked"))
