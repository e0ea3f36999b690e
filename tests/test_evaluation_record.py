"""One way to evaluate a checkpoint and record its metrics (rdexpert.evaluation.record)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from helpers import CATEGORY

from rdexpert.checkpoint.pretrained import Checkpoint
from rdexpert.data import list_samples
from rdexpert.evaluation.evaluate import evaluate
from rdexpert.evaluation.record import evaluate_checkpoint, split_record


@pytest.fixture
def copy_of_checkpoint(tiny_checkpoint, tmp_path):
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def test_records_the_metrics_of_the_default_setting(copy_of_checkpoint, tiny_data, tmp_path):
    checkpoint = Checkpoint.from_pretrained(copy_of_checkpoint)
    samples = list_samples(tiny_data, CATEGORY, "test")
    result = evaluate_checkpoint(checkpoint, samples, report=tmp_path / "report",
                                 record=split_record(tiny_data, CATEGORY))
    config = json.loads((copy_of_checkpoint / "config.json").read_text())
    stored = config["metrics"][checkpoint.info.default_setting]
    assert stored["split"] == "test" and stored["category"] == CATEGORY and stored["images"] == len(samples)
    assert stored["image_auroc"] == pytest.approx(result.metrics["image_auroc"])
    assert all(math.isfinite(v) for v in stored.values() if isinstance(v, float))
    assert config["calibration"]["f1_threshold"] == pytest.approx(result.metrics["f1_threshold"])
    assert (tmp_path / "report" / "scores.csv").is_file() and (tmp_path / "report" / "metrics.json").is_file()


def test_runs_the_prepared_model_and_leaves_the_checkpoint_trainable(tiny_checkpoint, tiny_data):
    checkpoint = Checkpoint.from_pretrained(tiny_checkpoint)
    samples = list_samples(tiny_data, CATEGORY, "test")
    result = evaluate_checkpoint(checkpoint, samples)
    plain = evaluate(checkpoint.model, samples, progress=False)
    assert not checkpoint.model.inference_only
    assert abs(result.scores - plain.scores).max() < 1e-4  # the same scores within float rounding


def test_a_non_default_setting_keeps_the_f1_threshold(copy_of_checkpoint, tiny_data):
    checkpoint = Checkpoint.from_pretrained(copy_of_checkpoint)
    before = json.loads((copy_of_checkpoint / "config.json").read_text())["calibration"].get("f1_threshold")
    samples = list_samples(tiny_data, CATEGORY, "test")
    evaluate_checkpoint(checkpoint, samples, gate="open", record=split_record(tiny_data, CATEGORY))
    config = json.loads((copy_of_checkpoint / "config.json").read_text())
    assert f"{checkpoint.info.default_reference}/open" in config["metrics"]
    assert config["calibration"].get("f1_threshold") == before
