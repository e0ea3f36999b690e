"""ONNX export of a tiny trained checkpoint, checked with ONNX Runtime against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import CATEGORY, SIZE
from torchvision.transforms.v2.functional import gaussian_blur as torchvision_blur

from rdexpert.checkpoint import CheckpointInfo, load_checkpoint
from rdexpert.cli import main
from rdexpert.data import image_to_tensor, load_image, resize_image
from rdexpert.export import TOLERANCE, compare_with_onnxruntime, export_onnx
from rdexpert.inference import Predictor
from rdexpert.model.anomaly_map import blur_kernel_size, gaussian_blur

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def onnx_file(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--out", str(path)]) == 0
    return path


def test_blur_is_torchvisions_exactly():
    x = torch.rand(3, 1, 70, 90) * 3
    size = blur_kernel_size(4.0)
    assert torch.equal(gaussian_blur(x, 4.0), torchvision_blur(x, kernel_size=[size, size], sigma=[4.0, 4.0]))


def test_onnx_maps_match_the_predictor_on_real_images(onnx_file, tiny_checkpoint, tiny_data):
    paths = sorted((tiny_data / CATEGORY / "test").rglob("*.png"))
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    expected = predictor.predict(paths)
    batch = torch.stack([image_to_tensor(resize_image(load_image(p), SIZE)) for p in paths]).numpy()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for images in (batch, batch[:1]):  # the batch axis is dynamic
        fused, scales, score = session.run(["anomaly_map", "scale_maps", "score"], {"image": images})
        assert fused.shape == (len(images), 1, SIZE, SIZE) and scales.shape == (len(images), 3, SIZE, SIZE)
        for i in range(len(images)):
            assert np.abs(fused[i, 0] - expected[i].anomaly_map).max() <= TOLERANCE
            assert np.abs(scales[i] - np.stack(expected[i].scale_maps)).max() <= TOLERANCE
            assert abs(score[i] - expected[i].score) <= TOLERANCE


def test_onnx_metadata_carries_config_and_threshold(onnx_file, tiny_checkpoint):
    metadata = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    config = json.loads(metadata["rdexpert_config"])
    assert config["model"]["backbone"] == "tf_efficientnet_lite0" and "source" not in config
    threshold = Predictor.from_pretrained(tiny_checkpoint, device="cpu").threshold
    assert float(metadata["threshold"]) == threshold
    reference = CheckpointInfo.from_config(config).default_reference  # the checkpoint's own default
    assert (metadata["reference"], metadata["gate"], metadata["image_size"]) == (reference, "gated", str(SIZE))


def test_export_with_other_switches(tiny_checkpoint, tmp_path):
    model, config = load_checkpoint(tiny_checkpoint)
    path = export_onnx(model, tmp_path / "expert_open.onnx", config, reference="expert", gate="open")
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    differences = compare_with_onnxruntime(model, path, images, reference="expert", gate="open")
    assert max(differences.values()) <= TOLERANCE, differences
