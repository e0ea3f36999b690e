"""The Checkpoint object: from_pretrained / save_pretrained round trips, Hub arguments passed through, and
inference preparation that never changes the caller's model."""

from __future__ import annotations

import pytest
import torch
from helpers import CATEGORY, REPO, SHA, put_in_cache

from rdexpert.checkpoint.folder import read_config
from rdexpert.checkpoint.pretrained import Checkpoint
from rdexpert.inference.predictor import Predictor


def test_local_checkpoint_reads_its_facts(tiny_checkpoint):
    checkpoint = Checkpoint.from_pretrained(tiny_checkpoint)
    assert checkpoint.is_local and checkpoint.folder == tiny_checkpoint.resolve()
    assert checkpoint.info.variant == read_config(tiny_checkpoint)["model"]["variant"]
    assert checkpoint.info.threshold == read_config(tiny_checkpoint)["calibration"]["threshold"]


def test_save_pretrained_round_trip_keeps_weights_and_sections(tiny_checkpoint, tmp_path):
    checkpoint = Checkpoint.from_pretrained(tiny_checkpoint)
    checkpoint.save_pretrained(tmp_path / "copy")
    again = Checkpoint.from_pretrained(tmp_path / "copy")
    for name, tensor in checkpoint.model.trainable_state_dict().items():
        assert torch.equal(tensor, again.model.trainable_state_dict()[name]), name
    assert again.config["calibration"] == checkpoint.config["calibration"]
    assert again.config["training"] == checkpoint.config["training"]
    assert again.folder == (tmp_path / "copy").resolve()


def test_hub_arguments_reach_huggingface_hub(tiny_checkpoint, hub_cache, tmp_path):
    other_cache = tmp_path / "elsewhere"
    other_cache.mkdir()
    put_in_cache(other_cache, tiny_checkpoint)  # not the default cache: found only through cache_dir
    checkpoint = Checkpoint.from_pretrained(REPO, subfolder=CATEGORY, revision=SHA, cache_dir=other_cache)
    assert checkpoint.source["type"] == "hub" and checkpoint.source["commit"] == SHA
    assert not checkpoint.is_local
    with pytest.raises(Exception, match="not in the local Hugging Face cache"):
        Checkpoint.from_pretrained(REPO, subfolder=CATEGORY, revision=SHA)  # the default cache is empty


def test_preparing_for_inference_leaves_the_callers_model_alone(tiny_checkpoint):
    checkpoint = Checkpoint.from_pretrained(tiny_checkpoint)
    prepared = checkpoint.prepared_model()
    assert prepared.inference_only and not checkpoint.model.inference_only
    checkpoint.model.trainable_state_dict()  # still savable
    predictor = Predictor(checkpoint.model, checkpoint.config, device="cpu")
    assert predictor.model.inference_only and predictor.model is not checkpoint.model
    assert not checkpoint.model.inference_only
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain, fast = checkpoint.model(images).maps.fused, prepared(images).maps.fused
    assert torch.allclose(plain, fast, atol=1e-4)
