"""Checkpoint config and validation, on the tiny checkpoint trained in conftest.py (seconds on a CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import CATEGORY, SIZE

from rdexpert.checkpoint.folder import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, load_checkpoint, read_config

pytestmark = pytest.mark.usefixtures("one_thread")


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
    with pytest.raises(CheckpointError, match="neither an existing folder nor a Hub address"):
        load_checkpoint(tmp_path / "absent")
    _edit(_copy(tiny_checkpoint, tmp_path / "v"), lambda c: c.update(format_version=99))
    with pytest.raises(CheckpointError, match="Upgrade rdexpert"):
        load_checkpoint(tmp_path / "v" / "copy")




def test_weights_and_config_from_different_saves_are_refused(tiny_checkpoint, tmp_path):
    """A save killed between the weights and the config must not load silently."""
    from rdexpert.checkpoint.io import read_tensors, write_tensors

    folder = _copy(tiny_checkpoint, tmp_path)
    tensors = read_tensors(folder / WEIGHTS_NAME)
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1  # new weights, old config
    write_tensors(folder / WEIGHTS_NAME, tensors)
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        load_checkpoint(folder)


def test_float16_export_halves_the_weights_and_scores_alike(tiny_checkpoint, tmp_path, capsys):
    import torch

    from rdexpert.cli import main

    out = tmp_path / "half"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "fp16", "--out", str(out)]) == 0
    full_bytes, half_bytes = (tiny_checkpoint / WEIGHTS_NAME).stat().st_size, (out / WEIGHTS_NAME).stat().st_size
    assert 0.45 < half_bytes / full_bytes < 0.55
    assert read_config(out)["weights_dtype"] == "float16"
    (full, _), (half, _) = load_checkpoint(tiny_checkpoint), load_checkpoint(out)  # the new hash is checked on load
    assert all(p.dtype == torch.float32 for p in half.parameters())  # upcast when loaded
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = full(images).maps.score, half(images).maps.score
    torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)
    assert main(["export", "--checkpoint", str(out), "--format", "fp16", "--out", str(out)]) != 0
    assert "another folder" in capsys.readouterr().err
