"""config.json is checked against one schema when it is read, and the model's memory before it is built.

Every tampered field below once crashed deep in the loader or the predictor (TypeError, AttributeError) or made
``rdexpert predict`` grow past 8 GB; now each is one CheckpointError line naming the file, the field and what is
allowed, before anything is allocated.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from helpers import CATEGORY

from rdexpert.checkpoint.folder import (
    CONFIG_NAME,
    MAX_MODEL_BYTES_ENV,
    WEIGHTS_NAME,
    CheckpointError,
    load_checkpoint,
    max_model_bytes,
    model_blueprint,
    read_config,
)
from rdexpert.checkpoint.schema import MAX_CONFIG_BYTES, MODEL
from rdexpert.inference.calibration import Calibration
from rdexpert.model import ExpertTeacherStudent, ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "checkpoints").glob("*/config.json"))


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(checkpoint, target)
    return target


def _edit(folder: Path, change) -> Path:
    config = json.loads((folder / CONFIG_NAME).read_text())
    change(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    return folder


def _setter(section, key, value):
    def change(config):
        (config if section is None else config.setdefault(section, {}))[key] = value
    return change


def _refusal(folder: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder, pretrained_expert=False)
    message = str(caught.value)
    assert "\n" not in message and str(folder / CONFIG_NAME) in message, message
    return message


# the attack on main: each field, and what its message must say
TAMPERED = [
    ("model", "ocbe_blocks", 100000, r"model\.ocbe_blocks must be an integer in \[1, 36\], got 100000"),
    ("model", "decoder_blocks", 20000, r"model\.decoder_blocks must be a list of 3 items, each an integer in \[1, 36\]"),
    ("model", "decoder_blocks", "3", r"model\.decoder_blocks must be a list of 3 items.*got '3'"),
    ("model", "decoder_blocks", [3, "4", 6], r"model\.decoder_blocks\[1\] must be an integer in \[1, 36\], got '4'"),
    ("calibration", "threshold", [1, 2], r"calibration\.threshold must be a finite number .* got a list of 2"),
    (None, "calibration", "x", r"calibration must be an object or null, got 'x'"),
    (None, "format", "2", r"format must be 'rdexpert-checkpoint', got '2'"),
    (None, "format_version", "2", r"format_version must be an integer >= 1, got '2'"),
    ("backbone", "mean", "x", r"backbone\.mean must be a list of 3 items, each a finite number in \[0, 1\], got 'x'"),
    ("model", "image_size", 20000, r"model\.image_size must be a multiple of 32 in \[32, 2048\], got 20000"),
    # and a few more of the same kind
    ("backbone", "std", [0.5, 0.5, math.inf], r"backbone\.std\[2\] must be a finite number in \[0\.01, 1\]"),
    ("calibration", "low", 1e9, r"calibration\.low must be a finite number in \[-1e\+06, 1e\+06\] or null"),
    ("metrics", "teacher/gated", {"image_auroc": [1]}, r"metrics\.teacher/gated\.image_auroc must be a number"),
    ("model", "backbone", "hf-hub:someone/model", r"model\.backbone must be a timm model name"),
    ("model", "variant", ["full"], r"model\.variant must be one of 'rd', .*got a list of 1"),
    ("model", "ocbe_blocks", True, r"model\.ocbe_blocks must be an integer in \[1, 36\], got true"),
    ("training", "image_size", [64], r"training\.image_size must be a multiple of 32 .* or null"),
    ("ood", "sha256", 5, r"ood\.sha256 must be 64 lowercase hexadecimal digits"),
]


@pytest.mark.parametrize("section, key, value, message", TAMPERED, ids=[f"{s}.{k}={v!r:.20}" for s, k, v, _ in TAMPERED])
def test_each_tampered_field_is_one_checkpoint_error_naming_it(tiny_checkpoint, tmp_path, section, key, value, message):
    folder = _edit(_copy(tiny_checkpoint, tmp_path), _setter(section, key, value))
    with pytest.raises(CheckpointError, match=message):
        read_config(folder)
    assert _refusal(folder)


def test_cross_field_rules_and_unknown_model_fields(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    threshold = read_config(folder)["calibration"]["threshold"]
    _edit(folder, _setter("calibration", "low", threshold + 1))
    assert "calibration.low must be below calibration.threshold" in _refusal(folder)
    _edit(folder, _setter("calibration", "low", threshold - 1))
    _edit(folder, _setter("model", "depth", 3))
    assert "model.depth must be absent (not a field of model" in _refusal(folder)


def test_broken_json_and_oversized_files_are_refused(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    (folder / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in _refusal(folder)
    (folder / CONFIG_NAME).write_bytes(b"\xff\xfe{}")
    assert "not valid JSON" in _refusal(folder)
    (folder / CONFIG_NAME).write_text(" " * (MAX_CONFIG_BYTES + 1))
    assert f"at most {MAX_CONFIG_BYTES} bytes" in _refusal(folder)
    nested = 0
    for _ in range(40):
        nested = [nested]
    shutil.copy(tiny_checkpoint / CONFIG_NAME, folder / CONFIG_NAME)
    _edit(folder, _setter("training", "worker", nested))
    assert "training.worker" in _refusal(folder) and "nested less deeply" in _refusal(folder)


def test_unknown_sections_are_logged_and_missing_ones_are_fine(tiny_checkpoint, tmp_path, caplog):
    folder = _edit(_copy(tiny_checkpoint, tmp_path), _setter(None, "added_by_a_newer_rdexpert", {"x": [1, "a"]}))
    with caplog.at_level(logging.WARNING, logger="rdexpert.checkpoint.schema"):
        read_config(folder)
    assert "unknown top-level section(s) 'added_by_a_newer_rdexpert'" in caplog.text

    def strip(config):  # as written before these sections and scoring fields existed
        for name in ("backbone", "input", "health", "ood", "calibration", "dataset", "license", "rdexpert_version"):
            config.pop(name, None)
        for name in ("default_reference", "map_align_corners", "blur_border", "precision", "input_fit"):
            config["model"].pop(name)
        config["training"] = {"seed": 111}
    _edit(folder, strip)
    read_config(folder)
    (folder / CONFIG_NAME).write_text(json.dumps({"model": {"variant": "full"}, "metrics": {"image_auroc": 0.9}}))
    read_config(folder)
    _edit(folder, _setter(None, "calibration", None))
    _edit(folder, _setter("health", "final", {"separation_teacher": math.nan}))  # undefined measures are records
    read_config(folder)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_checkpoints_fit_the_schema(path):
    read_config(path.parent)


def test_the_model_section_is_model_config(tiny_checkpoint):
    """The table's model fields are ModelConfig's, and ModelConfig refuses what the table refuses."""
    assert set(MODEL.fields) == {f.name for f in fields(ModelConfig)}
    for bad in (dict(ocbe_blocks=100000), dict(decoder_blocks="3"), dict(decoder_blocks=(3, 4)),
                dict(blur_sigma="3"), dict(image_size=True), dict(backbone="hf-hub:a/b"), dict(variant=["full"])):
        with pytest.raises(ValueError):
            ModelConfig(**bad)
    assert ModelConfig.from_dict(read_config(tiny_checkpoint)["model"]).image_size == 64


def test_the_memory_estimate_is_the_real_model_and_is_checked_before_building(tiny_checkpoint, tmp_path,
                                                                           monkeypatch):
    config = ModelConfig.from_dict(read_config(tiny_checkpoint)["model"])
    plan = model_blueprint(config)
    real = ExpertTeacherStudent(config, pretrained=False)
    assert plan.model_bytes == sum(t.numel() * t.element_size() for t in [*real.parameters(), *real.buffers()])
    assert plan.weights_bytes == sum(t.numel() * t.element_size() for t in real.trainable_state_dict().values())

    import torch

    import rdexpert.checkpoint.folder as folder_module

    built = []

    def counted(*args, **kwargs):  # the real builds, not the measurements on the meta device
        if torch.empty(0).device.type != "meta":
            built.append(args)
        return ExpertTeacherStudent(*args, **kwargs)
    monkeypatch.setattr(folder_module, "ExpertTeacherStudent", counted)
    model_blueprint.cache_clear()
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, str(plan.load_bytes - 1))
    message = _refusal(tiny_checkpoint)
    assert "needs about" in message and MAX_MODEL_BYTES_ENV in message and "above the limit" in message
    assert built == []  # refused before the real model was built
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, str(plan.load_bytes))
    load_checkpoint(tiny_checkpoint, pretrained_expert=False)
    assert len(built) == 1
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_MODEL_BYTES_ENV):
        max_model_bytes()
    monkeypatch.delenv(MAX_MODEL_BYTES_ENV)

    # the largest blocks the schema allows, on a large backbone: measured on the meta device, refused by default
    huge = ModelConfig(backbone="wide_resnet50_2", ocbe_blocks=36, decoder_blocks=(36, 36, 36), image_size=64)
    assert model_blueprint(huge).load_bytes > max_model_bytes()
    folder = _edit(_copy(tiny_checkpoint, tmp_path), lambda c: (c.pop("backbone"), c["model"].update(
        backbone="wide_resnet50_2", ocbe_blocks=36, decoder_blocks=[36, 36, 36])))
    assert "above the limit" in _refusal(folder)
    _edit(folder, _setter("model", "backbone", "no_such_network"))
    assert "model.backbone 'no_such_network' cannot be built here" in _refusal(folder)


def test_a_weights_file_larger_than_the_model_is_not_read(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    with open(folder / WEIGHTS_NAME, "ab") as f:
        f.write(b"\0" * (32 * 2**20))  # beyond the weights, and beyond the stages older checkpoints kept
    with pytest.raises(CheckpointError, match="model.safetensors is .* bytes; the weights of a .* take at most"):
        load_checkpoint(folder, pretrained_expert=False)


def test_calibration_values_of_the_wrong_type_are_value_errors():
    """Calibration.from_dict also guards configs that did not come through read_config (in-memory dicts)."""
    for bad in ({"threshold": [1, 2]}, {"threshold": "2"}, {"threshold": 2.0, "low": "x"},
                {"threshold": 2.0, "holdout_scores": 5}, {"threshold": 2.0, "source": 3}):
        with pytest.raises(ValueError, match="calibration"):
            Calibration.from_dict(bad)
    with pytest.raises(ValueError, match="must be an object"):
        Calibration.from_config({"calibration": "x"})


def test_cli_refuses_a_tampered_checkpoint_in_one_line(tiny_checkpoint, tiny_data, tmp_path):
    folder = _edit(_copy(tiny_checkpoint, tmp_path), _setter("model", "decoder_blocks", "3"))
    image = tiny_data / CATEGORY / "test" / "good" / "000.png"
    done = subprocess.run([sys.executable, "-m", "rdexpert", "predict", "--checkpoint", str(folder), "--input",
                           str(image), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rdexpert predict: error: ") and "model.decoder_blocks must be a list of 3" in lines[0]
    assert str(folder / CONFIG_NAME) in lines[0]
