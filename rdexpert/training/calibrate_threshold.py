"""Choose a model's decision threshold from data the method already has, never from the test split.

Why this module exists: a handful of held-out normal images (5 for MPDD metal_plate) says little
about where new normal scores end, but synthetic anomalies made on those same images say where
defects begin; :meth:`rdexpert.inference.calibration.Calibration.from_normal_and_synthetic` puts the threshold
in the gap. Used at the end of training and by ``rdexpert calibrate``, which re-calibrates an
existing checkpoint (e.g. one trained before this rule) in place.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from rdexpert.checkpoint.folder import training_split, update_config
from rdexpert.checkpoint.pretrained import Checkpoint
from rdexpert.inference.calibration import Calibration
from rdexpert.inference.scoring import sample_batches, score_images
from rdexpert.model import ExpertTeacherStudent
from rdexpert.runtime import resolve_device
from rdexpert.synthesis import AnomalySynthesizer
from rdexpert.training.config import TrainConfig
from rdexpert.training.health import health_set_of

CALIBRATION_SEED = 20_250_301  # fixed: re-calibrating the same checkpoint gives the same threshold
MIN_SYNTHETIC = 40  # synthetic anomalies at least; few held-out images get more draws each
MAX_IMAGES = 64  # held-out images that get synthetic twins (all of them are scored as normals)


def calibrate(
    model: ExpertTeacherStudent, samples: list, image_size: int, device: torch.device,
    synthesizer: AnomalySynthesizer | None = None, source: str = "held-out normal training images",
) -> dict:
    """Score ``samples`` (normal images the model did not train on) and, with a ``synthesizer``, synthetic
    anomalies made on them; the threshold and normalisation follow. Returns the config.json section."""
    fit = model.config.input_fit
    scored = score_images(model, sample_batches(samples, image_size, fit=fit), device)
    normal = [score for batch in scored for score in batch.scores.tolist()]
    if synthesizer is None:
        return Calibration.from_normal_scores(normal, source=source).to_dict()
    chosen = samples[:MAX_IMAGES]
    draws = max(2, math.ceil(MIN_SYNTHETIC / len(chosen)))
    twins = health_set_of(chosen, model.config, synthesizer, draws=draws, seed=CALIBRATION_SEED)
    synthetic, faint = ([s for batch in score_images(model, twins.batches(group, 8), device) for s in batch.scores.tolist()]
                        for group in ("augmented", "faint"))
    return Calibration.from_normal_and_synthetic(normal, synthetic, source=source, faint_scores=faint).to_dict()


def recalibrate_checkpoint(folder: str | Path, data_root: str | None = None, category: str | None = None,
                           layout: str | None = None, textures: str | None = None, device: str = "auto") -> dict:
    """Re-run the calibration of a local checkpoint folder on the normal images it held out in training
    (same split: its stored holdout fraction and seed) and store it in its config.json. A stored F1
    threshold is kept. ``data_root`` / ``category`` / ``textures`` default to what the checkpoint recorded."""
    folder = Path(folder)
    device_ = resolve_device(device)
    checkpoint = Checkpoint.from_pretrained(folder, map_location=device_)
    config, info = checkpoint.config, checkpoint.info
    training = config.get("training", {})
    train, holdout = training_split(config, data_root, category, layout)
    run = TrainConfig.from_dict(training)
    textures = textures or run.textures
    if textures and not Path(textures).is_dir():
        raise FileNotFoundError(f"texture folder {textures!r} (used in training) not found; pass --textures")
    synthesizer = run.synthesizer(training.get("foreground_method", "auto"), textures)
    model = checkpoint.prepared_model()  # as the Predictor runs it: faster, the same scores within rounding
    section = calibrate(model, holdout or train, model.config.image_size, device_, synthesizer,
                        source="held-out normal training images" if holdout else "the training images themselves: optimistic")
    if info.calibration.get("f1_threshold") is not None:
        section["f1_threshold"] = info.calibration["f1_threshold"]
    update_config(folder, calibration=section)
    return section
