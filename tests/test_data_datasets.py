"""Tests for rdexpert.data.datasets: the evaluation and training torch datasets."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from helpers import box_mask, rgb_array, save_image

from rdexpert.data.datasets import ImageDataset, SyntheticAnomalyDataset
from rdexpert.data.layouts import Sample, list_samples


# --------------------------------------------------------------------------- helpers
class FakeSynth:
    """Adds a random bright square; deterministic given the rng."""

    def __init__(self):
        self.foregrounds = []

    def __call__(self, image, rng, foreground):
        self.foregrounds.append(foreground)
        h, w = image.shape[:2]
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        mask = np.zeros((h, w), np.float32)
        mask[y : y + 4, x : x + 4] = 1
        out = image.copy()
        out[mask > 0] = rng.random(3).astype(np.float32)
        return SimpleNamespace(image=out, mask=mask)


# --------------------------------------------------------------------------- real data
def test_mpdd_image_dataset_item(mpdd_root):
    test = list_samples(mpdd_root, "metal_plate", "test")
    bad = next(s for s in test if s.label == 1)
    item = ImageDataset([bad], 64, fit="squash")[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 64, 64) and item["mask"].max() == 1
    assert item["label"] == 1 and item["path"] == str(bad.path)


# --------------------------------------------------------------------------- torch datasets
def _normal_samples(tmp_path, n=4, h=20, w=30):
    return [Sample(save_image(tmp_path / f"n{i}.png", rgb_array(h, w, seed=i)), 0, None, "good") for i in range(n)]


def test_image_dataset_shapes(tmp_path):
    samples = _normal_samples(tmp_path, 2)
    samples.append(Sample(save_image(tmp_path / "d.png", rgb_array(20, 30)), 1, save_image(tmp_path / "dm.png", box_mask(20, 30)), "x"))
    ds = ImageDataset(samples, 16, fit="squash")
    assert len(ds) == 3
    for i in range(3):
        it = ds[i]
        assert it["image"].shape == (3, 16, 16) and it["image"].dtype == torch.float32
        assert 0.0 <= float(it["image"].min()) and float(it["image"].max()) <= 1.0
        assert it["mask"].shape == (1, 16, 16) and it["mask"].dtype == torch.float32
        assert set(torch.unique(it["mask"]).tolist()) <= {0.0, 1.0}
    assert ds[0]["mask"].sum() == 0 and ds[2]["mask"].sum() > 0 and ds[2]["label"] == 1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["label"].tolist() == [0, 0, 1]


def test_synthetic_dataset_determinism(tmp_path):
    samples = _normal_samples(tmp_path, 3)
    fg_calls = []

    def fg(img):
        fg_calls.append(1)
        return np.ones(img.shape[:2], bool)

    ds = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=5, foreground_method=fg, fit="squash")
    a = ds[1]
    assert set(a) >= {"image", "augmented", "mask", "path"}
    assert a["image"].shape == a["augmented"].shape == (3, 16, 16)
    assert a["mask"].shape == (1, 16, 16) and a["mask"].sum() == 16
    assert a["augmented"].dtype == torch.float32 and float(a["augmented"].max()) <= 1.0
    assert torch.equal(a["augmented"], ds[1]["augmented"])
    assert not torch.equal(a["mask"], ds[2]["mask"]) or not torch.equal(a["augmented"], ds[2]["augmented"])
    assert len(fg_calls) == 2  # foreground cached per index

    ds.set_epoch(1)
    b = ds[1]
    assert ds.epoch == 1
    assert not torch.equal(a["augmented"], b["augmented"])
    assert torch.equal(a["image"], b["image"])
    ds.set_epoch(0)
    assert torch.equal(a["augmented"], ds[1]["augmented"])

    ds2 = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=5, foreground_method=False, fit="squash")
    assert torch.equal(ds2[1]["augmented"], a["augmented"])
    assert ds2.synthesizer.foregrounds == [None]
    ds3 = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=6, foreground_method=False, fit="squash")
    assert not torch.equal(ds3[1]["augmented"], a["augmented"])


def test_synthetic_dataset_epoch_reaches_persistent_workers(tmp_path):
    samples = _normal_samples(tmp_path, 2)
    ds = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=0, foreground_method=False, fit="squash")
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, persistent_workers=True)
    ds.set_epoch(0)
    e0 = next(iter(loader))["augmented"]
    ds.set_epoch(3)
    e3 = next(iter(loader))["augmented"]
    ref = torch.stack([ds[0]["augmented"], ds[1]["augmented"]])  # main process, epoch 3
    assert torch.equal(e3, ref) and not torch.equal(e0, e3)
