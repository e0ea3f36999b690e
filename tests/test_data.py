"""Tests for rdexpert.data: image loading, dataset layouts, torch datasets."""
from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rdexpert.data import (
    ImageDataset,
    ImageLoadError,
    Sample,
    SyntheticAnomalyDataset,
    detect_layout,
    folder_samples,
    list_samples,
    load_image,
    load_mask,
    mvtec_samples,
    split_holdout,
    visa_samples,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MPDD = DATA / "mpdd"
needs_mpdd = pytest.mark.skipif(not (MPDD / "metal_plate").is_dir(), reason="shared MPDD data not present")


# --------------------------------------------------------------------------- helpers
def _rgb(h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(path)
    return path


def _mask(h=12, w=16, box=(2, 2, 6, 6)):
    m = np.zeros((h, w), np.uint8)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = 255
    return m


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
@needs_mpdd
def test_mpdd_counts_and_masks():
    assert detect_layout(MPDD, "metal_plate") == "mvtec"
    train = list_samples(MPDD, "metal_plate", "train")
    test = list_samples(MPDD, "metal_plate", "test")
    assert len(train) == 54 and all(s.label == 0 and s.mask_path is None for s in train)
    good = [s for s in test if s.label == 0]
    bad = [s for s in test if s.label == 1]
    assert len(good) == 26 and len(bad) == 81
    assert all(s.mask_path is not None and s.mask_path.is_file() for s in bad)
    assert all(s.mask_path.name == f"{s.path.stem}_mask.png" for s in bad)
    assert {s.defect_type for s in bad} == {"defect"}
    assert test == list_samples(MPDD, "metal_plate", "test")  # deterministic
    m = load_mask(bad[0].mask_path)
    assert m.dtype == bool and m.any() and m.shape == load_image(bad[0].path).shape[:2]


@needs_mpdd
def test_mpdd_image_dataset_item():
    test = list_samples(MPDD, "metal_plate", "test")
    bad = next(s for s in test if s.label == 1)
    item = ImageDataset([bad], 64)[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 64, 64) and item["mask"].max() == 1
    assert item["label"] == 1 and item["path"] == str(bad.path)


def test_wrong_category_lists_available(tmp_path):
    _save(tmp_path / "bottle" / "train" / "good" / "000.png", _rgb())
    _save(tmp_path / "screw" / "train" / "good" / "000.png", _rgb())
    with pytest.raises(FileNotFoundError) as e:
        mvtec_samples(tmp_path, "nope", "train")
    assert "nope" in str(e.value) and "bottle" in str(e.value) and "screw" in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        list_samples(tmp_path / "missing_root", "bottle", "train")
    assert "missing_root" in str(e.value)


# --------------------------------------------------------------------------- image loading
def test_load_image_modes(tmp_path):
    rgb = _rgb()
    out = load_image(_save(tmp_path / "rgb.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3) and np.array_equal(out, rgb)

    gray = rgb[..., 0]
    out = load_image(_save(tmp_path / "gray.png", gray))
    assert out.shape == (12, 16, 3) and np.array_equal(out[..., 1], gray)

    rgba = np.dstack([rgb, np.full((12, 16), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    out = load_image(_save(tmp_path / "rgba.png", rgba))
    assert out.shape == (12, 16, 3)
    assert np.array_equal(out[1:], rgb[1:]) and (out[0, 0] == 0).all()  # composited on black

    la = np.dstack([gray, np.full((12, 16), 255, np.uint8)])
    out = load_image(_save(tmp_path / "la.png", la, "LA"))
    assert out.shape == (12, 16, 3) and np.array_equal(out[..., 0], gray)

    g16 = (np.arange(12 * 16).reshape(12, 16) * 300).astype(np.uint16)
    p16 = tmp_path / "g16.png"
    Image.fromarray(g16).save(p16)
    out = load_image(p16)
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    assert np.abs(out[..., 0].astype(int) - np.round(g16 / 257).astype(int)).max() <= 1

    import cv2

    c16 = np.zeros((12, 16, 3), np.uint16)
    c16[..., 2] = 65535  # red in BGR
    cv2.imwrite(str(tmp_path / "c16.tif"), c16)
    out = load_image(tmp_path / "c16.tif")
    assert out.shape == (12, 16, 3) and out[0, 0, 0] >= 254 and out[0, 0, 2] == 0

    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.save(tmp_path / "pal.png")
    out = load_image(tmp_path / "pal.png")
    assert out.shape == (12, 16, 3) and np.array_equal(out, np.asarray(pal.convert("RGB")))

    Image.fromarray(rgb).save(tmp_path / "img.JPG", quality=95)
    assert load_image(tmp_path / "img.JPG").shape == (12, 16, 3)


def test_load_image_errors(tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError, match="corrupt.png"):
        load_image(bad)
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.txt"):
        load_image(txt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.png"):
        load_image(empty)
    # truncated PNG: valid header, missing data
    good = _save(tmp_path / "full.png", _rgb(64, 64))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageLoadError, match="trunc.png"):
        load_image(trunc)
    with pytest.raises(ImageLoadError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    assert issubclass(ImageLoadError, ValueError)


def test_large_image_downscaled_and_bomb_refused(tmp_path, monkeypatch):
    p = _save(tmp_path / "big.png", _rgb(200, 300))
    out = load_image(p, max_pixels=10_000)
    assert out.shape[0] * out.shape[1] <= 10_000 and out.shape[2] == 3
    assert abs(out.shape[1] / out.shape[0] - 1.5) < 0.1
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's bomb limit = 2x this
    with pytest.raises(ImageLoadError, match="big.png"):
        load_image(p)


def test_load_mask_variants(tmp_path):
    m = _mask()
    assert load_mask(_save(tmp_path / "m.png", m)).sum() == 16
    m01 = (m > 0).astype(np.uint8)  # {0,1} masks
    assert load_mask(_save(tmp_path / "m01.png", m01)).sum() == 16
    col = np.zeros((12, 16, 3), np.uint8)
    col[2:6, 2:6, 1] = 255  # green only
    assert load_mask(_save(tmp_path / "mc.png", col)).sum() == 16
    # LOCO-style folder of parts: merged
    d = tmp_path / "loco_mask"
    _save(d / "000.png", _mask(box=(0, 0, 2, 2)))
    _save(d / "001.png", _mask(box=(10, 10, 12, 12)))
    assert load_mask(d).sum() == 8


# --------------------------------------------------------------------------- layouts
def test_btad_layout(tmp_path):
    cat = tmp_path / "01"
    _save(cat / "train" / "ok" / "0000.bmp", _rgb())
    _save(cat / "train" / "ok" / "0001.bmp", _rgb())
    _save(cat / "test" / "ok" / "0000.bmp", _rgb())
    _save(cat / "test" / "ko" / "0000.bmp", _rgb())
    _save(cat / "test" / "ko" / "0001.bmp", _rgb())
    _save(cat / "ground_truth" / "ko" / "0000.png", _mask())
    _save(cat / "ground_truth" / "ko" / "0001.bmp", _mask())
    assert detect_layout(tmp_path, "01") == "mvtec"
    assert len(list_samples(tmp_path, "01", "train")) == 2
    test = list_samples(tmp_path, "01", "test")
    assert [(s.label, s.defect_type) for s in test] == [(1, "ko"), (1, "ko"), (0, "ok")]
    assert [s.mask_path.name for s in test if s.label] == ["0000.png", "0001.bmp"]


def test_mvtec3d_layout(tmp_path):
    cat = tmp_path / "bagel"
    _save(cat / "train" / "good" / "rgb" / "000.png", _rgb())
    (cat / "train" / "good" / "xyz").mkdir(parents=True)
    _save(cat / "test" / "good" / "rgb" / "000.png", _rgb())
    _save(cat / "test" / "good" / "gt" / "000.png", np.zeros((12, 16), np.uint8))
    _save(cat / "test" / "crack" / "rgb" / "000.png", _rgb())
    _save(cat / "test" / "crack" / "gt" / "000.png", _mask())
    train = mvtec_samples(tmp_path, "bagel", "train")
    assert [s.path.parent.name for s in train] == ["rgb"]
    test = mvtec_samples(tmp_path, "bagel", "test")
    assert [(s.defect_type, s.label) for s in test] == [("crack", 1), ("good", 0)]
    assert test[0].mask_path == cat / "test" / "crack" / "gt" / "000.png"
    assert test[1].mask_path is None


def test_loco_layout(tmp_path):
    cat = tmp_path / "juice_bottle"
    _save(cat / "train" / "good" / "000.png", _rgb())
    _save(cat / "test" / "good" / "000.png", _rgb())
    _save(cat / "test" / "logical_anomalies" / "000.png", _rgb())
    _save(cat / "ground_truth" / "logical_anomalies" / "000" / "000.png", _mask(box=(0, 0, 2, 2)))
    _save(cat / "ground_truth" / "logical_anomalies" / "000" / "001.png", _mask(box=(4, 4, 6, 6)))
    test = mvtec_samples(tmp_path, "juice_bottle", "test")
    bad = [s for s in test if s.label == 1]
    assert len(bad) == 1 and bad[0].mask_path.is_dir()
    item = ImageDataset(bad, 12)[0]
    assert item["mask"].sum() > 0 and item["label"] == 1


def test_missing_mask_names_expected_path(tmp_path):
    cat = tmp_path / "c"
    _save(cat / "train" / "good" / "a.png", _rgb())
    _save(cat / "test" / "scratch" / "007.png", _rgb())
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
        _save(tmp_path / p, _rgb())
        rows.append(["candle", "train" if i < 2 else "test", "normal", p, ""])
    p, mp = "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"
    _save(tmp_path / p, _rgb())
    _save(tmp_path / mp, _mask())
    rows.append(["candle", "test", "anomaly", p, mp])
    _save(tmp_path / "pcb1" / "Data" / "Images" / "Normal" / "0000.JPG", _rgb())
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
        _save(tmp_path / "normal" / f"n{i}.png", _rgb())
    _save(tmp_path / "defect" / "d0.png", _rgb())
    _save(tmp_path / "defect" / "d1.jpg", _rgb())
    _save(tmp_path / "defect" / "d2.png", _rgb())
    _save(tmp_path / "masks" / "d0.png", _mask())
    _save(tmp_path / "masks" / "d1_mask.png", _mask())
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


# --------------------------------------------------------------------------- torch datasets
def _normal_samples(tmp_path, n=4, h=20, w=30):
    return [Sample(_save(tmp_path / f"n{i}.png", _rgb(h, w, seed=i)), 0, None, "good") for i in range(n)]


def test_image_dataset_shapes(tmp_path):
    samples = _normal_samples(tmp_path, 2)
    samples.append(Sample(_save(tmp_path / "d.png", _rgb(20, 30)), 1, _save(tmp_path / "dm.png", _mask(20, 30)), "x"))
    ds = ImageDataset(samples, 16)
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

    ds = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=5, foreground_method=fg)
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

    ds2 = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=5, foreground_method=False)
    assert torch.equal(ds2[1]["augmented"], a["augmented"])
    assert ds2.synthesizer.foregrounds == [None]
    ds3 = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=6, foreground_method=False)
    assert not torch.equal(ds3[1]["augmented"], a["augmented"])


def test_synthetic_dataset_epoch_reaches_persistent_workers(tmp_path):
    samples = _normal_samples(tmp_path, 2)
    ds = SyntheticAnomalyDataset(samples, 16, FakeSynth(), seed=0, foreground_method=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, persistent_workers=True)
    ds.set_epoch(0)
    e0 = next(iter(loader))["augmented"]
    ds.set_epoch(3)
    e3 = next(iter(loader))["augmented"]
    ref = torch.stack([ds[0]["augmented"], ds[1]["augmented"]])  # main process, epoch 3
    assert torch.equal(e3, ref) and not torch.equal(e0, e3)


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
