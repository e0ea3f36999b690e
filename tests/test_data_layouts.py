"""Tests for rdexpert.data.layouts: dataset layouts, sample listing, holdout split."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import box_mask, rgb_array, save_image

from rdexpert.data.datasets import ImageDataset
from rdexpert.data.images import load_image, load_mask
from rdexpert.data.layouts import (
    Sample,
    detect_layout,
    folder_samples,
    list_samples,
    mvtec_samples,
    split_holdout,
    visa_samples,
)


# --------------------------------------------------------------------------- real data
def test_mpdd_counts_and_masks(mpdd_root):
    assert detect_layout(mpdd_root, "metal_plate") == "mvtec"
    train = list_samples(mpdd_root, "metal_plate", "train")
    test = list_samples(mpdd_root, "metal_plate", "test")
    assert len(train) == 54 and all(s.label == 0 and s.mask_path is None for s in train)
    good = [s for s in test if s.label == 0]
    bad = [s for s in test if s.label == 1]
    assert len(good) == 26 and len(bad) == 81
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in bad)
    assert all(s.mask_path.name == f"{s.path.stem}_mask.png" for s in bad)
    assert {s.defect_type for s in bad} == {"defect"}
    assert test == list_samples(mpdd_root, "metal_plate", "test")  # deterministic
    m = load_mask(bad[0].mask_path)
    assert m.dtype == bool and m.any() and m.shape == load_image(bad[0].path).shape[:2]


def test_wrong_category_lists_available(tmp_path):
    save_image(tmp_path / "bottle" / "train" / "good" / "000.png", rgb_array())
    save_image(tmp_path / "screw" / "train" / "good" / "000.png", rgb_array())
    with pytest.raises(FileNotFoundError) as e:
        mvtec_samples(tmp_path, "nope", "train")
    assert "nope" in str(e.value) and "bottle" in str(e.value) and "screw" in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        list_samples(tmp_path / "missing_root", "bottle", "train")
    assert "missing_root" in str(e.value)


# --------------------------------------------------------------------------- layouts
def test_btad_layout(tmp_path):
    cat = tmp_path / "01"
    save_image(cat / "train" / "ok" / "0000.bmp", rgb_array())
    save_image(cat / "train" / "ok" / "0001.bmp", rgb_array())
    save_image(cat / "test" / "ok" / "0000.bmp", rgb_array())
    save_image(cat / "test" / "ko" / "0000.bmp", rgb_array())
    save_image(cat / "test" / "ko" / "0001.bmp", rgb_array())
    save_image(cat / "ground_truth" / "ko" / "0000.png", box_mask())
    save_image(cat / "ground_truth" / "ko" / "0001.bmp", box_mask())
    assert detect_layout(tmp_path, "01") == "mvtec"
    assert len(list_samples(tmp_path, "01", "train")) == 2
    test = list_samples(tmp_path, "01", "test")
    assert [(s.label, s.defect_type) for s in test] == [(1, "ko"), (1, "ko"), (0, "ok")]
    assert [s.mask_path.name for s in test if s.label] == ["0000.png", "0001.bmp"]


def test_mvtec3d_layout(tmp_path):
    cat = tmp_path / "bagel"
    save_image(cat / "train" / "good" / "rgb" / "000.png", rgb_array())
    (cat / "train" / "good" / "xyz").mkdir(parents=True)
    save_image(cat / "test" / "good" / "rgb" / "000.png", rgb_array())
    save_image(cat / "test" / "good" / "gt" / "000.png", np.zeros((12, 16), np.uint8))
    save_image(cat / "test" / "crack" / "rgb" / "000.png", rgb_array())
    save_image(cat / "test" / "crack" / "gt" / "000.png", box_mask())
    train = mvtec_samples(tmp_path, "bagel", "train")
    assert [s.path.parent.name for s in train] == ["rgb"]
    test = mvtec_samples(tmp_path, "bagel", "test")
    assert [(s.defect_type, s.label) for s in test] == [("crack", 1), ("good", 0)]
    assert test[0].mask_path == cat / "test" / "crack" / "gt" / "000.png"
    assert test[1].mask_path is None


def test_loco_layout(tmp_path):
    cat = tmp_path / "juice_bottle"
    save_image(cat / "train" / "good" / "000.png", rgb_array())
    save_image(cat / "test" / "good" / "000.png", rgb_array())
    save_image(cat / "test" / "logical_anomalies" / "000.png", rgb_array())
    save_image(cat / "ground_truth" / "logical_anomalies" / "000" / "000.png", box_mask(box=(0, 0, 2, 2)))
    save_image(cat / "ground_truth" / "logical_anomalies" / "000" / "001.png", box_mask(box=(4, 4, 6, 6)))
    test = mvtec_samples(tmp_path, "juice_bottle", "test")
    bad = [s for s in test if s.label == 1]
    assert len(bad) == 1 and bad[0].mask_path.is_dir()
    item = ImageDataset(bad, 12)[0]
    assert item["mask"].sum() > 0 and item["label"] == 1


def test_missing_mask_names_expected_path(tmp_path):
    cat = tmp_path / "c"
    save_image(cat / "train" / "good" / "a.png", rgb_array())
    save_image(cat / "test" / "scratch" / "007.png", rgb_array())
    with pytest.raises(FileNotFoundError) as e:
        mvtec_samples(tmp_path, "c", "test")
    msg = str(e.value)
    assert "007.png" in msg and str(cat / "ground_truth" / "scratch" / "007_mask.png") in msg


def test_empty_folder_error(tmp_path):
    (tmp_path / "c" / "train" / "good").mkdir(parents=True)
    (tmp_path / "c" / "train" / "good" / "readme.txt").write_text("x")
    with pytest.raises(ValueError) as e:
        mvtec_samples(tmp_path, "c", "train")
    assert "good" in str(e.value) and ".png" in str(e.value)


def test_visa_layout(tmp_path):
    rows = []
    for i in range(3):
        p = f"candle/Data/Images/Normal/{i:04d}.JPG"
        save_image(tmp_path / p, rgb_array())
        rows.append(["candle", "train" if i < 2 else "test", "normal", p, ""])
    p, mp = "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"
    save_image(tmp_path / p, rgb_array())
    save_image(tmp_path / mp, box_mask())
    rows.append(["candle", "test", "anomaly", p, mp])
    save_image(tmp_path / "pcb1" / "Data" / "Images" / "Normal" / "0000.JPG", rgb_array())
    rows.append(["pcb1", "train", "normal", "pcb1/Data/Images/Normal/0000.JPG", ""])
    (tmp_path / "split_csv").mkdir()
    with open(tmp_path / "split_csv" / "1cls.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["object", "split", "label", "image", "mask"])
        w.writerows(rows)
    assert detect_layout(tmp_path, "candle") == "visa"
    train = list_samples(tmp_path, "candle", "train")
    assert len(train) == 2 and all(s.label == 0 for s in train)
    test = visa_samples(tmp_path, "candle", "test")
    assert sorted(s.label for s in test) == [0, 1]
    assert next(s for s in test if s.label).mask_path == tmp_path / mp
    with pytest.raises(FileNotFoundError) as e:
        visa_samples(tmp_path, "capsules", "train")
    assert "candle" in str(e.value) and "pcb1" in str(e.value)


def test_folder_samples(tmp_path):
    for i in range(3):
        save_image(tmp_path / "normal" / f"n{i}.png", rgb_array())
    save_image(tmp_path / "defect" / "d0.png", rgb_array())
    save_image(tmp_path / "defect" / "d1.jpg", rgb_array())
    save_image(tmp_path / "defect" / "d2.png", rgb_array())
    save_image(tmp_path / "masks" / "d0.png", box_mask())
    save_image(tmp_path / "masks" / "d1_mask.png", box_mask())
    (tmp_path / "normal" / "notes.txt").write_text("ignored")
    s = folder_samples(tmp_path / "normal", tmp_path / "defect", tmp_path / "masks")
    assert [x.label for x in s] == [0, 0, 0, 1, 1, 1]
    masks = {x.path.stem: x.mask_path for x in s if x.label}
    assert masks["d0"].name == "d0.png" and masks["d1"].name == "d1_mask.png" and masks["d2"] is None
    item = ImageDataset(s, 8)[5]
    assert item["label"] == 1 and item["has_mask"] is False and item["mask"].sum() == 0
    assert detect_layout(tmp_path, "normal") == "folder"
    assert len(list_samples(tmp_path, "normal", "train")) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as e:
        folder_samples(tmp_path / "empty")
    assert "empty" in str(e.value) and ".jpg" in str(e.value)


def test_split_holdout(tmp_path):
    samples = [Sample(Path(f"/x/{i}.png"), 0, None, "good") for i in range(20)]
    tr, ho = split_holdout(samples, 0.1, seed=0)
    assert len(ho) == 2 and len(tr) == 18
    assert set(tr).isdisjoint(ho) and set(tr) | set(ho) == set(samples)
    assert (tr, ho) == split_holdout(samples, 0.1, seed=0)
    tr2, ho2 = split_holdout(samples[:2], 0.01)
    assert len(tr2) == 1 and len(ho2) == 1
    tr3, ho3 = split_holdout(samples[:3], 0.9)
    assert len(tr3) >= 1 and len(ho3) >= 1
    assert split_holdout(samples[:1], 0.5) == (samples[:1], [])
    with pytest.raises(ValueError):
        split_holdout([Sample(Path("/y.png"), 1, Path("/m.png"), "d")], 0.5)
