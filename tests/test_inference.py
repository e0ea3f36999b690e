"""Predictor, calibration and checkpoint validation, on a tiny checkpoint trained here (seconds on a CPU).

The ``tiny_data`` / ``tiny_checkpoint`` fixtures are also used by test_hub.py and
test_export.py (imported from here).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch
from PIL import Image

from rdexpert.calibration import Calibration
from rdexpert.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, load_checkpoint, read_config
from rdexpert.cli import main
from rdexpert.inference import Prediction, Predictor, to_rgb
from rdexpert.train import TrainConfig, train

CATEGORY = "widget"
SIZE = 64


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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a loaded 2-core machine two spinning OpenMP threads run ~10x slower than one; tiny models need one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_data, tmp_path_factory) -> Path:
    """2 iterations of the real training loop, EfficientNet-Lite0 with its offline ImageNet weights, 64 px."""
    out = tmp_path_factory.mktemp("ckpt") / CATEGORY
    config = TrainConfig(data_root=str(tiny_data), category=CATEGORY, out=str(out), iterations=2, image_size=SIZE,
                         batch_size=2, device="cpu", num_workers=0, foreground="none", save_every=1000)
    return train(config, progress=False)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint) -> Predictor:
    return Predictor.from_pretrained(tiny_checkpoint, device="cpu")


def _test_images(data: Path) -> list[Path]:
    return sorted((data / CATEGORY / "test").rglob("*.png"))


# -- Predictor ------------------------------------------------------------------------------------
def test_single_image_gives_a_consistent_prediction(predictor, tiny_data):
    path = _test_images(tiny_data)[0]
    p = predictor.predict(path)
    assert isinstance(p, Prediction) and p.path == str(path)
    assert p.image.shape == (SIZE, SIZE, 3) and p.image.dtype == np.uint8
    assert p.anomaly_map.shape == (SIZE, SIZE) and p.anomaly_map.dtype == np.float32
    assert len(p.scale_maps) == 3 and all(m.shape == (SIZE, SIZE) and m.dtype == np.float32 for m in p.scale_maps)
    assert p.score == pytest.approx(float(p.anomaly_map.max()), rel=1e-6)
    assert p.normalized_score == pytest.approx(predictor.normalize(p.score))
    assert p.label == int(p.score >= predictor.threshold)
    assert predictor.device.type == "cpu" and predictor.config["model"]["image_size"] == SIZE


def test_every_input_kind_is_preprocessed_like_a_file(predictor, tiny_data):
    path = _test_images(tiny_data)[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    inputs = [path, str(path), Image.open(path), rgb, rgb.astype(np.uint16) * 257, rgb / 255.0, rgba]
    scores = [p.score for p in predictor.predict(inputs)]
    assert np.allclose(scores, scores[0], rtol=0, atol=1e-6), scores
    grey = predictor.predict(rgb[..., 0])
    assert grey.path is None and np.array_equal(grey.image[..., 0], grey.image[..., 2])
    with pytest.raises(ValueError, match="H x W x 3"):
        predictor.predict(np.zeros((3, 40, 40), np.uint8))
    with pytest.raises(TypeError, match="a list of those"):
        predictor.predict(42)


def test_to_rgb_matches_the_training_loader(tiny_data):
    path = _test_images(tiny_data)[0]
    from rdexpert.data import load_image

    assert np.array_equal(to_rgb(Image.open(path)), load_image(path))


def test_folder_and_list_give_lists_and_batching_does_not_change_results(predictor, tiny_data):
    folder = tiny_data / CATEGORY / "test" / "defect"
    by_folder = predictor.predict(folder, batch_size=1)
    assert isinstance(by_folder, list) and [p.path for p in by_folder] == [str(f) for f in sorted(folder.glob("*.png"))]
    images = _test_images(tiny_data)
    one_by_one = predictor.predict(images, batch_size=1)
    batched = predictor.predict(images, batch_size=3)
    assert [p.path for p in batched] == [str(p) for p in images]
    for a, b in zip(one_by_one, batched):
        assert np.allclose(a.anomaly_map, b.anomaly_map, atol=1e-5)
    assert len(list(predictor.iter_predict(images, batch_size=2))) == len(images)


def test_switches_change_the_maps_without_reloading(predictor, tiny_data):
    path = _test_images(tiny_data)[-1]
    model = predictor.model
    maps = {(r, g): predictor.predict(path, reference=r, gate=g).anomaly_map
            for r, g in [("teacher", "gated"), ("teacher", "open"), ("teacher", "closed"), ("expert", "gated")]}
    assert predictor.model is model
    base = maps[("teacher", "gated")]
    for key, other in maps.items():
        if key != ("teacher", "gated"):
            assert not np.allclose(base, other), key
    with pytest.raises(ValueError, match="gate"):
        predictor.predict(path, gate="half")


def test_threshold_sits_at_one_half_and_can_be_moved(tiny_checkpoint, tiny_data):
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    assert predictor.normalize(predictor.threshold) == pytest.approx(0.5)
    p = predictor.predict(_test_images(tiny_data)[0])
    normalized_map = predictor.map_to_normalized(p.anomaly_map)
    assert normalized_map.dtype == np.float32 and 0 <= normalized_map.min() and normalized_map.max() <= 1
    assert normalized_map.max() == pytest.approx(p.normalized_score, abs=1e-6)
    predictor.threshold = p.score - 1e-3
    assert predictor.predict(p.image).label == 1
    assert predictor.normalize(predictor.threshold) == pytest.approx(0.5)
    fixed = Predictor.from_pretrained(tiny_checkpoint, device="cpu", threshold=p.score + 1e-3)
    assert fixed.predict(p.image).label == 0
    with pytest.raises(ValueError, match="no F1 threshold"):
        Predictor.from_pretrained(tiny_checkpoint, device="cpu", threshold="f1")
    with pytest.raises(TypeError, match="unexpected arguments"):
        Predictor.from_pretrained(tiny_checkpoint, device="cpu", thresold=1.0)


# -- calibration ----------------------------------------------------------------------------------
def test_calibration_rule_and_normalisation():
    scores = [0.20, 0.22, 0.25, 0.30, 0.24]
    c = Calibration.from_normal_scores(scores)
    assert c.low == 0.20
    assert c.threshold == pytest.approx(np.quantile(scores, 0.99) + 0.25 * (np.quantile(scores, 0.99) - 0.20))
    assert c.normalize(c.low) == 0.0 and c.normalize(c.threshold) == pytest.approx(0.5)
    assert c.normalize(-5.0) == 0.0 and c.normalize(99.0) == 1.0
    values = np.linspace(0, 1, 50, dtype=np.float32)
    normalized = c.normalize(values)
    assert normalized.dtype == np.float32 and np.all(np.diff(normalized) >= 0)
    assert c.label(c.threshold) == 1 and list(c.label(np.array([0.0, 10.0]))) == [0, 1]
    again = Calibration.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c


def test_calibration_false_alarm_rate_on_new_normal_images():
    """Expected share of new normal images above the threshold, for Gaussian normal scores (documented figures)."""
    rng = np.random.default_rng(0)
    gauss = NormalDist()

    def false_alarms(n: int, margin: float) -> float:
        return float(np.mean([1 - gauss.cdf(Calibration.from_normal_scores(rng.normal(0, 1, n), margin=margin).threshold)
                              for _ in range(3000)]))

    assert false_alarms(5, 0.25) < 0.10 < false_alarms(5, 0.0)  # the bare maximum of 5 flags 1 in 6
    assert false_alarms(10, 0.25) < 0.04
    assert false_alarms(30, 0.25) < 0.01


def test_calibration_edge_cases():
    one = Calibration.from_normal_scores([0.4])
    assert one.low < one.threshold and one.normalize(one.threshold) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one"):
        Calibration.from_normal_scores([])
    with pytest.raises(ValueError, match="NaN"):
        Calibration.from_normal_scores([0.1, float("nan")])
    moved = one.with_threshold(one.low - 1.0)  # below every normal score: the scale keeps its width
    assert moved.normalize(moved.threshold) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="calibrated threshold"):
        Calibration.from_dict({})
    first_format = Calibration.from_dict({"threshold": 0.5, "holdout_scores": [0.2, 0.3]})
    assert first_format.low == 0.2


# -- checkpoints ----------------------------------------------------------------------------------
def test_config_records_everything_needed_to_rebuild(tiny_checkpoint):
    config = read_config(tiny_checkpoint)
    assert config["model"]["backbone"] == "tf_efficientnet_lite0"
    assert config["backbone"]["mean"] == [0.5, 0.5, 0.5] and config["backbone"]["std"] == [0.5, 0.5, 0.5]
    assert config["input"]["image_size"] == SIZE
    assert config["training"]["preset"] == "cpu" and config["training"]["seed"] == 111
    assert config["dataset"]["category"] == CATEGORY and config["rdexpert_version"]
    assert config["calibration"]["threshold"] > config["calibration"]["low"]


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(checkpoint, target)
    return target


def _edit(folder: Path, change) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    change(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


def test_checkpoint_for_another_backbone_names_the_mismatch(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)

    def to_resnet(config):
        config["model"]["backbone"] = config["backbone"]["name"] = "resnet18"
        config["backbone"]["pretrained"] = False
    _edit(folder, to_resnet)
    with pytest.raises(CheckpointError, match="channels: config.json \\[24, 40, 112\\] vs rebuilt \\[64, 128, 256\\]"):
        load_checkpoint(folder)
    _edit(folder, lambda c: c.pop("backbone"))  # first-format config: the tensor shapes still catch it
    with pytest.raises(CheckpointError, match="resnet18 / full model: .* shape mismatches"):
        load_checkpoint(folder, pretrained_expert=False)


def test_checkpoint_with_other_normalisation_or_size_is_refused(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    _edit(folder, lambda c: c["backbone"].update(mean=[0.485, 0.456, 0.406]))
    with pytest.raises(CheckpointError, match="mean \\(input normalisation\\)"):
        load_checkpoint(folder)
    _edit(folder, lambda c: (c["backbone"].update(mean=[0.5] * 3), c["input"].update(image_size=128)))
    with pytest.raises(CheckpointError, match="image_size"):
        load_checkpoint(folder)


def test_broken_checkpoints_fail_with_clear_messages(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    (folder / WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(folder)
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_checkpoint(folder)
    (folder / CONFIG_NAME).write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="neither an existing folder nor a Hub reference"):
        load_checkpoint(tmp_path / "absent")
    _edit(_copy(tiny_checkpoint, tmp_path / "v"), lambda c: c.update(format_version=99))
    with pytest.raises(CheckpointError, match="Upgrade rdexpert"):
        load_checkpoint(tmp_path / "v" / "copy")


# -- command line ---------------------------------------------------------------------------------
def test_cli_predict_writes_csv_and_overlays(tiny_checkpoint, tiny_data, tmp_path):
    folder = tiny_data / CATEGORY / "test" / "defect"
    single = tiny_data / CATEGORY / "test" / "good" / "000.png"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), str(single),
                 "--out", str(tmp_path), "--device", "cpu", "--batch-size", "2"]) == 0
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [str(p) for p in sorted(folder.glob("*.png"))] + [str(single)]
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    expected = predictor.predict(single)
    assert float(rows[-1]["score"]) == pytest.approx(expected.score, abs=1e-5)
    assert float(rows[-1]["normalized_score"]) == pytest.approx(expected.normalized_score, abs=1e-4)
    assert int(rows[-1]["label"]) == expected.label
    overlays = sorted(p.name for p in (tmp_path / "overlays").glob("*.png"))
    assert overlays == ["000.png", "000_1.png", "001.png"]  # the two 000.png inputs do not overwrite each other
    assert np.asarray(Image.open(tmp_path / "overlays" / "001.png")).shape == (SIZE, SIZE, 3)


def test_cli_test_saves_metrics_and_f1_threshold(tiny_checkpoint, tiny_data, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    args = ["test", "--checkpoint", str(folder), "--data-root", str(tiny_data), "--category", CATEGORY,
            "--out", str(tmp_path / "report"), "--device", "cpu"]
    assert main(args) == 0
    assert "metrics" not in read_config(folder)  # only when asked
    assert main(args + ["--save-metrics"]) == 0
    assert main(args + ["--save-metrics", "--gate", "open"]) == 0
    config = read_config(folder)
    assert set(config["metrics"]) == {"teacher/gated", "teacher/open"}
    row = config["metrics"]["teacher/gated"]
    assert row["images"] == 4 and row["defective"] == 2 and 0 <= row["image_auroc"] <= 1 and "aupro" in row
    assert config["calibration"]["f1_threshold"] == pytest.approx(row["f1_threshold"])
    predictor = Predictor.from_pretrained(folder, device="cpu", threshold="f1")
    assert predictor.threshold == pytest.approx(row["f1_threshold"])
    assert predictor.normalize(predictor.threshold) == pytest.approx(0.5)
