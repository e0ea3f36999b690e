"""The backbone keeps only the stages RD reads (strides 4, 8, 16): nothing it returns changes, and checkpoints
written while the teacher still carried the stride-32 stages load and score exactly as before."""

import json

import pytest
import timm
import torch

from rdexpert.checkpoint.folder import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from rdexpert.checkpoint.io import read_tensors, write_tensors
from rdexpert.model import ExpertTeacherStudent, ModelConfig
from rdexpert.model.backbones import FeatureExtractor

BACKBONE = "tf_efficientnet_lite0"


def test_dropping_the_unused_stages_changes_no_feature():
    extractor = FeatureExtractor(BACKBONE, pretrained=False).eval()
    assert extractor.dropped, "EfficientNet's feature class runs its stride-32 blocks: they should be dropped"
    assert all(name.startswith(("body.blocks.5.", "body.blocks.6.")) for name in extractor.dropped)
    whole = timm.create_model(BACKBONE, pretrained=False, features_only=True, out_indices=(1, 2, 3)).eval()
    result = whole.load_state_dict(extractor.body.state_dict(), strict=False)
    assert not result.unexpected_keys and {k.split(".")[1] for k in result.missing_keys} == {"5", "6"}
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        kept = extractor(images)
        every = whole((images - extractor.mean) / extractor.std)
    assert all(torch.equal(a, b) for a, b in zip(kept, every))
    assert sum(p.numel() for p in extractor.parameters()) < 0.3 * sum(p.numel() for p in whole.parameters())


def test_other_backbones_keep_every_stage():
    assert FeatureExtractor("resnet18", pretrained=False).dropped == {}


def _with_old_tail(folder, model: ExpertTeacherStudent, shape_of=lambda shape: shape):
    """Rewrite a checkpoint as rdexpert wrote it before the stages were dropped: the teacher's tail stored too."""
    state = read_tensors(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(2)
    for name, shape in model.trained_teacher.dropped.items():
        state[f"trained_teacher.{name}"] = torch.rand(shape_of(shape), generator=generator)
    write_tensors(folder / "model.safetensors", state)
    config = json.loads((folder / "config.json").read_text())
    config["weights_sha256"] = file_sha256(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))


def test_a_checkpoint_that_stored_the_dropped_stages_loads_and_scores_the_same(tmp_path):
    torch.manual_seed(0)
    model = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64, backbone=BACKBONE),
                                 pretrained=False).eval()
    assert not any(".blocks.5." in k or ".blocks.6." in k for k in model.trainable_state_dict())
    folder = save_checkpoint(model, tmp_path / "old", training={"pretrained": False})
    _with_old_tail(folder, model)
    loaded, _ = load_checkpoint(folder)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(images).maps.fused, loaded(images).maps.fused)


def test_a_stored_tail_of_the_wrong_shape_is_refused(tmp_path):
    model = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64, backbone=BACKBONE), pretrained=False)
    folder = save_checkpoint(model, tmp_path / "odd", training={"pretrained": False})
    _with_old_tail(folder, model, shape_of=lambda shape: (*shape[:-1], max(1, shape[-1] - 1)) if shape else (2,))
    with pytest.raises(CheckpointError, match="unused backbone stages"):
        load_checkpoint(folder)
