"""A checkpoint is a folder: ``config.json`` (how to rebuild) + ``model.safetensors`` (teacher and student).

The expert is never stored: it is the pretrained backbone, rebuilt from its
source. Only JSON and safetensors are ever read, so loading an untrusted
checkpoint cannot execute code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import __version__
from .io import read_json, read_tensors, write_json, write_tensors
from .model import ExpertTeacherStudent, ModelConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or does not fit the model it describes."""


def save_checkpoint(model: ExpertTeacherStudent, folder: str | Path, **info) -> Path:
    """Write the model's config and trainable weights; ``info`` (dataset, metrics, ...) goes into config.json."""
    folder = Path(folder)
    config = {"rdexpert_version": __version__, "model": model.config.to_dict(), **info}
    write_tensors(folder / WEIGHTS_NAME, model.trainable_state_dict(), metadata={"format": "pt"})
    write_json(folder / CONFIG_NAME, config)
    return folder


def read_config(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{folder} is not an rdexpert checkpoint: {CONFIG_NAME} is missing")
    config = read_json(path)
    if "model" not in config:
        raise CheckpointError(f"{path} has no 'model' section; it was not written by rdexpert")
    return config


def load_checkpoint(
    folder: str | Path, pretrained_expert: bool = True, map_location: str | torch.device = "cpu"
) -> tuple[ExpertTeacherStudent, dict]:
    """Rebuild the model from ``folder``; every stored tensor must match the rebuilt model by name and shape."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        model_config = ModelConfig(**config["model"])
    except TypeError as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: invalid model section ({error})") from None
    weights_path = folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}")
    model = ExpertTeacherStudent(model_config, pretrained=pretrained_expert)
    state = read_tensors(weights_path)
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{weights_path} does not match a {model_config.backbone} / {model_config.variant} model: "
            f"{len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(mismatched)} shape mismatches {mismatched[:3]}"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    return model.to(map_location).eval(), config
