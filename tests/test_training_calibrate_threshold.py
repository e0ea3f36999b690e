"""rdexpert.training.calibrate_threshold: the threshold from held-out normal images and synthetic anomalies
made on them, the same every time for the same checkpoint (on the tiny checkpoint of conftest.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from rdexpert.checkpoint.folder import load_checkpoint, read_config, training_split, update_config
from rdexpert.inference.calibration import Calibration
from rdexpert.training.calibrate_threshold import MIN_SYNTHETIC, calibrate, recalibrate_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def copy(tiny_checkpoint, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, target)
    return target


def test_recalibrating_the_same_checkpoint_gives_the_same_threshold(copy):
    trained = read_config(copy)["calibration"]
    torch.manual_seed(1), np.random.seed(1)  # the global random state plays no part (a fixed seed of its own)
    first = recalibrate_checkpoint(copy, device="cpu")
    torch.manual_seed(2), np.random.seed(2)
    second = recalibrate_checkpoint(copy, device="cpu")
    assert first == second and read_config(copy)["calibration"] == second  # stored in config.json
    # the calibration made at the end of training, again: the same images and synthetic anomalies, the same rule
    assert first["method"] == trained["method"] == "normal images + synthetic anomalies"
    assert first["source"] == trained["source"] == "held-out normal training images"
    assert first["threshold"] == pytest.approx(trained["threshold"], rel=1e-5)
    assert first["low"] == pytest.approx(trained["low"], rel=1e-5)
    np.testing.assert_allclose(first["synthetic_scores"], trained["synthetic_scores"], atol=1e-5)
    assert first["low"] < first["threshold"]


def test_one_held_out_image_gets_enough_synthetic_twins(copy):
    config = read_config(copy)
    _, holdout = training_split(config)
    assert len(holdout) == 1  # 6 training images, 0.1 held out: one (rounded up)
    estimates = recalibrate_checkpoint(copy, device="cpu")["estimates"]
    assert estimates["normal_images"] == 1
    assert estimates["synthetic_anomalies"] == estimates["faint_anomalies"] == MIN_SYNTHETIC  # 40 draws of the one


def test_a_stored_f1_threshold_is_kept(copy):
    config = read_config(copy)
    config["calibration"]["f1_threshold"] = 1.234
    update_config(copy, calibration=config["calibration"])
    assert recalibrate_checkpoint(copy, device="cpu")["f1_threshold"] == 1.234


def test_missing_textures_or_data_are_refused_before_anything_is_written(copy, tmp_path):
    before = (copy / "config.json").read_bytes()
    with pytest.raises(FileNotFoundError, match="texture folder .*not found"):
        recalibrate_checkpoint(copy, textures=str(tmp_path / "absent"), device="cpu")
    with pytest.raises(FileNotFoundError, match="data folder .*not found"):
        recalibrate_checkpoint(copy, data_root=str(tmp_path / "absent"), device="cpu")
    assert (copy / "config.json").read_bytes() == before


def test_without_a_synthesizer_the_threshold_comes_from_normal_scores_only(tiny_checkpoint):
    model, config = load_checkpoint(tiny_checkpoint, map_location="cpu")
    train, _ = training_split(config)
    section = calibrate(model.eval(), train, model.config.image_size, torch.device("cpu"), source="the training images")
    normal = section["holdout_scores"]
    assert len(normal) == len(train) == 5 and "synthetic_scores" not in section
    expected = Calibration.from_normal_scores(normal, source="the training images").to_dict()  # from rounded scores
    assert {k: v for k, v in section.items() if k not in ("threshold", "low")} == {
        k: v for k, v in expected.items() if k not in ("threshold", "low")}
    assert (section["threshold"], section["low"]) == pytest.approx((expected["threshold"], expected["low"]), abs=1e-5)
    assert section["threshold"] > max(normal) and section["low"] <= min(normal)
