"""Tests for rdexpert.data.layouts: dataset layouts, sample listing, holdout split."""
from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import box_mask, rgb_array, save_image

from rdexpert.checkpoint.folder import read_config
from rdexpert.cli import main
from rdexpert.data.datasets import ImageDataset
from rdexpert.data.images import load_image, load_mask
from rdexpert.data.layouts import (
    AnomalibFolder,
    Sample,
    detect_layout,
    folder_samples,
    holdout_samples,
    list_samples,
    mvtec_ad2_samples,
    mvtec_samples,
    parse_layout,
    split_holdout,
    train_and_holdout,
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
    item = ImageDataset(bad, 12, fit="squash")[0]
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
    item = ImageDataset(s, 8, fit="squash")[5]
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


# ------------------------------------------------------------ anomalib Folder and MVTec AD 2, real images
def _link(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)
    return target


@pytest.fixture
def folder_root(mpdd_root, tmp_path) -> Path:
    """anomalib's Folder layout from MPDD: good/ 10 normal, good_test/ 3, crack/ 3 and rust/ 3 defective images,
    masks mask/<folder>/<stem>_mask.png (the MPDD ground truth) and the same masks flat in masks_flat/."""
    plate, root = mpdd_root / "metal_plate", tmp_path / "folder"
    for p in sorted((plate / "train" / "good").iterdir())[:10]:
        _link(p, root / "good" / p.name)
    for p in sorted((plate / "test" / "good").iterdir())[:3]:
        _link(p, root / "good_test" / p.name)
    defects = sorted((plate / "test" / "defect").iterdir())[:6]
    for folder, chunk in (("crack", defects[:3]), ("rust", defects[3:])):
        for p in chunk:
            _link(p, root / folder / p.name)
            mask = plate / "ground_truth" / "defect" / f"{p.stem}_mask.png"
            _link(mask, root / "mask" / folder / mask.name)
            _link(mask, root / "masks_flat" / mask.name)
    return root


@pytest.fixture
def ad2_root(mpdd_root, tmp_path) -> Path:
    """MVTec AD 2's layout from MPDD: train/good 8, validation/good 3, test_public/{good 3, bad 4,
    ground_truth/bad/<stem>_mask.png}, and test_private/ 2 images without labels."""
    plate, cat = mpdd_root / "metal_plate", tmp_path / "ad2" / "metal_plate"
    train = sorted((plate / "train" / "good").iterdir())
    for p in train[:8]:
        _link(p, cat / "train" / "good" / p.name)
    for p in train[8:11]:
        _link(p, cat / "validation" / "good" / p.name)
    for p in sorted((plate / "test" / "good").iterdir())[:3]:
        _link(p, cat / "test_public" / "good" / p.name)
    defects = sorted((plate / "test" / "defect").iterdir())
    for p in defects[:4]:
        _link(p, cat / "test_public" / "bad" / p.name)
        mask = f"{p.stem}_mask.png"
        _link(plate / "ground_truth" / "defect" / mask, cat / "test_public" / "ground_truth" / "bad" / mask)
    for i, p in enumerate(defects[4:6]):
        _link(p, cat / "test_private" / f"{i:03d}.png")
    return cat.parent


def test_anomalib_folder_splits_normals_like_anomalib(folder_root):
    train = AnomalibFolder("good", ["crack", "rust"], "mask").samples(folder_root, "train")
    test = AnomalibFolder("good", ["crack", "rust"], "mask").samples(folder_root, "test")
    normal_test = [s for s in test if s.label == 0]
    # no normal_test_dir: round(10 x 0.2) = 2 normal images are tested, the other 8 train; never both
    assert (len(train), len(normal_test)) == (8, 2)
    assert {s.path.name for s in train} | {s.path.name for s in normal_test} == {
        p.name for p in (folder_root / "good").iterdir()}
    assert not {s.path for s in train} & {s.path for s in normal_test}
    assert test == AnomalibFolder("good", ["crack", "rust"], "mask").samples(folder_root, "test")  # seeded
    other = AnomalibFolder("good", seed=5, normal_split_ratio=0.5).samples(folder_root, "train")
    assert len(other) == 5
    bad = [s for s in test if s.label == 1]
    assert [s.defect_type for s in bad] == ["crack"] * 3 + ["rust"] * 3
    # masks matched by name, from mask/<abnormal folder name>/
    assert all(s.mask_path == folder_root / "mask" / s.defect_type / f"{s.path.stem}_mask.png" for s in bad)
    m = load_mask(bad[0].mask_path)
    assert m.dtype == bool and m.any() and m.shape == load_image(bad[0].path).shape[:2]


def test_anomalib_folder_normal_test_dir_flat_masks_and_no_masks(folder_root):
    train = AnomalibFolder("good", "crack", normal_test_dir="good_test").samples(folder_root, "train")
    assert len(train) == 10  # a normal_test_dir: every normal_dir image trains
    test = AnomalibFolder("good", "crack", "masks_flat", "good_test").samples(folder_root, "test")
    assert [(s.label, s.path.parent.name) for s in test] == [(0, "good_test")] * 3 + [(1, "crack")] * 3
    assert all(s.mask_path.parent.name == "masks_flat" for s in test if s.label)
    # no mask folder: defective images count for image-level metrics only
    unmasked = AnomalibFolder(str(folder_root / "good"), "rust").samples(folder_root, "test")  # absolute works too
    assert [s.mask_path for s in unmasked if s.label] == [None] * 3
    item = ImageDataset(unmasked, 16, fit="squash")[len(unmasked) - 1]
    assert item["label"] == 1 and item["has_mask"] is False


def test_anomalib_folder_errors_are_clear(folder_root):
    with pytest.raises(FileNotFoundError, match="Normal image folder .*nowhere' does not exist"):
        AnomalibFolder("nowhere").samples(folder_root, "train")
    with pytest.raises(FileNotFoundError, match="Abnormal image folder .*dents' does not exist"):
        AnomalibFolder("good", ["crack", "dents"]).samples(folder_root, "test")
    with pytest.raises(ValueError, match="no test split without abnormal_dir"):
        AnomalibFolder("good").samples(folder_root, "test")
    victim = next((folder_root / "mask" / "rust").iterdir())
    victim.unlink()  # one defective image loses its mask: an error, not a silent image-level-only image
    stem = victim.name.removesuffix("_mask.png")
    with pytest.raises(FileNotFoundError, match=f"No mask for defective image .*{stem}.png.*leave out the mask"):
        AnomalibFolder("good", ["crack", "rust"], "mask").samples(folder_root, "test")
    # two abnormal folders with one image name and one flat mask folder: which mask is whose?
    _link(next((folder_root / "crack").iterdir()).resolve(), folder_root / "dents" / next(
        (folder_root / "crack").iterdir()).name)
    with pytest.raises(ValueError, match="would share the mask"):
        AnomalibFolder("good", ["crack", "dents"], "masks_flat").samples(folder_root, "test")


def test_anomalib_folder_layout_string_round_trips_through_list_samples(folder_root):
    folders = AnomalibFolder("good", ["crack", "rust"], "mask")
    assert folders.layout == ("anomalib_folder?normal_dir=good&abnormal_dir=crack&abnormal_dir=rust&mask_dir=mask"
                              "&normal_split_ratio=0.2&seed=0")
    assert parse_layout(folders.layout) == ("anomalib_folder", folders)
    assert folders.abnormal_dir == ("crack", "rust")
    # the folders are relative to root/category, as any category folder
    assert list_samples(folder_root.parent, folder_root.name, "test", folders.layout) == folders.samples(
        folder_root, "test")
    odd = AnomalibFolder("a&b=c", normal_test_dir="t")  # odd folder names are quoted, and come back whole
    assert "a&b=c" not in odd.layout and parse_layout(odd.layout)[1] == odd
    assert odd.layout == "anomalib_folder?normal_dir=a%26b%3Dc&normal_test_dir=t"  # no split: no ratio, no seed
    for bad, message in [("mvtec?normal_dir=x", "only the anomalib_folder"), ("anomalib_folder", "needs its normal"),
                         ("anomalib_folder?mask_dir=m", "lacks normal_dir"),
                         ("anomalib_folder?normal_dir=g&colour=red", "unknown anomalib_folder option 'colour'"),
                         ("anomalib_folder?normal_dir=g&normal_split_ratio=1", r"\[0, 1\)"),
                         ("anomalib_folder?normal_dir=g&seed=x", "not a number"), ("mvtec2", "one of auto, mvtec")]:
        with pytest.raises(ValueError, match=message):
            list_samples(folder_root, None, "train", bad)
    assert detect_layout(folder_root, "good") == "folder"  # auto never guesses anomalib_folder: it needs the names


def test_mvtec_ad2_layout(ad2_root):
    assert detect_layout(ad2_root, "metal_plate") == "mvtec_ad2"
    train = list_samples(ad2_root, "metal_plate", "train")
    assert len(train) == 8 and all(s.label == 0 and s.path.parent.parent.name == "train" for s in train)
    test = list_samples(ad2_root, "metal_plate", "test")
    assert [(s.label, s.defect_type) for s in test] == [(1, "bad")] * 4 + [(0, "good")] * 3  # test_private unlisted
    gt = ad2_root / "metal_plate" / "test_public" / "ground_truth" / "bad"
    assert all(s.mask_path == gt / f"{s.path.stem}_mask.png" for s in test if s.label)
    assert test == mvtec_ad2_samples(ad2_root, "metal_plate", "test")
    # validation/good is the held-out set: every train/good image trains, whatever the fraction
    holdout = holdout_samples(ad2_root, "metal_plate")
    assert [s.path.parent.parent.name for s in holdout] == ["validation"] * 3
    assert train_and_holdout(ad2_root, "metal_plate", "auto", fraction=0.5, seed=3) == (train, holdout)
    shutil.rmtree(ad2_root / "metal_plate" / "test_public")
    with pytest.raises(FileNotFoundError, match="test_private have no labels: score them with `rdexpert predict"):
        list_samples(ad2_root, "metal_plate", "test")


def test_mvtec_holdout_is_the_seeded_split(mpdd_root):
    assert holdout_samples(mpdd_root, "metal_plate") is None
    normal = list_samples(mpdd_root, "metal_plate", "train")
    assert train_and_holdout(mpdd_root, "metal_plate", "mvtec", 0.1, 7) == split_holdout(normal, 0.1, seed=7)


def test_cli_train_and_test_on_an_anomalib_folder(folder_root, tmp_path, capsys, one_thread):
    """The folders reach the checkpoint as one layout string, and the printed next command tests on them."""
    out = tmp_path / "checkpoint"
    assert main(["train", "--data-root", str(folder_root), "--layout", "anomalib_folder", "--normal-dir", "good",
                 "--abnormal-dir", "crack", "--abnormal-dir", "rust", "--mask-dir", "mask", "--out", str(out),
                 "--iterations", "2", "--image-size", "64", "--batch-size", "2", "--device", "cpu",
                 "--foreground", "none", "--health-every", "0"]) == 0
    layout = AnomalibFolder("good", ["crack", "rust"], "mask").layout
    assert read_config(out)["dataset"]["layout"] == layout
    (next_line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("next: ")]
    command = shlex.split(next_line.removeprefix("next: "))
    assert command[command.index("--layout") + 1] == layout
    assert main(command[1:] + ["--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "8 images" in printed  # 2 held-out normal + 6 defective images
    metrics = json.loads((Path(command[command.index("--out") + 1]) / "metrics.json").read_text())
    assert 0 <= metrics["image_auroc"] <= 1 and 0 <= metrics["pixel_auroc"] <= 1
    # flags that belong to no layout, or a folder layout without its normal folder: one-line errors
    assert main(["test", "--checkpoint", str(out), "--data-root", str(folder_root), "--layout", "mvtec",
                 "--mask-dir", "mask", "--out", str(tmp_path / "t")]) == 2
    assert "--mask-dir belong to --layout anomalib_folder, not --layout mvtec" in capsys.readouterr().err
    assert main(["test", "--checkpoint", str(out), "--data-root", str(folder_root), "--layout", "anomalib_folder",
                 "--out", str(tmp_path / "t")]) == 2
    assert "needs --normal-dir" in capsys.readouterr().err


def test_cli_test_on_mvtec_ad2_is_auto_detected(tiny_checkpoint, ad2_root, tmp_path, capsys, one_thread):
    assert main(["test", "--checkpoint", str(tiny_checkpoint), "--data-root", str(ad2_root), "--category",
                 "metal_plate", "--out", str(tmp_path / "test"), "--device", "cpu"]) == 0
    assert "7 images" in capsys.readouterr().out  # test_public: 3 good + 4 bad; test_private is not a test set
    assert json.loads((tmp_path / "test" / "metrics.json").read_text())["pixel_auroc"] > 0
