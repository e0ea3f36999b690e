"""The fast inference path (prepare_for_inference, the matrix blur) gives the maps of a plain forward.

The reference is written out here the straightforward way, on the checkpoint's model as loaded: features,
student, per-scale cosine distance, bilinear upsampling, sum, and scipy's Gaussian filter in float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn

from rdexpert.checkpoint.folder import load_checkpoint
from rdexpert.data import image_to_tensor
from rdexpert.inference.predictor import Predictor
from rdexpert.model import ExpertTeacherStudent, ModelConfig, capture_gates
from rdexpert.model.anomaly_map import gaussian_blur
from rdexpert.model.ets import CPU_CHUNK_PIXELS
from rdexpert.model.fusion import fold_batch_norms

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "metal_plate"  # Lite0, full, 256 px
SCIPY_MODE = {"mirror": "mirror", "reflect": "reflect"}  # our blur borders are scipy's modes of the same name
TOLERANCE = 1e-4  # raw score units; the maps reach ~3


def plain_maps(model: ExpertTeacherStudent, images: torch.Tensor, reference: str, gate: str):
    """(fused maps, per-scale maps) as numpy, computed without any of the fast path."""
    c = model.config
    with torch.inference_mode():
        teacher = model.teacher(images)
        student = model.decoder(model.ocbe(teacher), teacher, gate)
        target = teacher if reference == "teacher" else model.expert(images)
        scales = [F.interpolate((1 - F.cosine_similarity(s, t, dim=1)).unsqueeze(1), size=images.shape[-2:],
                                mode="bilinear", align_corners=c.map_align_corners) for s, t in zip(student, target)]
    summed = sum(scales)[:, 0].double().numpy()
    fused = np.stack([gaussian_filter(m, sigma=c.blur_sigma, mode=SCIPY_MODE[c.blur_border], truncate=4) for m in summed])
    return fused, torch.cat(scales, dim=1).numpy()


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("the shipped metal_plate checkpoint is not here")
    return Predictor.from_pretrained(SHIPPED, device="cpu"), load_checkpoint(SHIPPED, map_location="cpu")[0].eval()


@pytest.mark.parametrize("reference, gate", [("teacher", "gated"), ("expert", "open")])
def test_the_predictors_maps_are_the_plain_forwards_on_a_real_image(shipped, mpdd_root, reference, gate):
    predictor, plain = shipped
    path = mpdd_root / "metal_plate" / "test" / "defect" / "test_00026.png"
    prediction = predictor.predict(path, reference=reference, gate=gate)
    fused, scales = plain_maps(plain, image_to_tensor(prediction.image)[None], reference, gate)
    assert predictor.model.inference_only and not plain.inference_only
    np.testing.assert_allclose(prediction.anomaly_map, fused[0], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.stack(prediction.scale_maps), scales[0], atol=TOLERANCE, rtol=0)
    assert prediction.score == pytest.approx(fused[0].max(), abs=TOLERANCE)
    assert fused[0].max() > 10 * TOLERANCE  # a map with something in it, not a trivially equal zero


def test_prepare_folds_every_batchnorm_and_forbids_training():
    model = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64), pretrained=False).eval()
    # built without the stride-32 stages timm would run for nothing (tests/test_backbone_stages.py)
    assert len(model.expert.body.blocks) == len(model.teacher.body.blocks) == 5  # the stride-16 feature is blocks.4
    assert model.prepare_for_inference() is model and model.prepare_for_inference() is model  # twice: no-op
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.decoder.stage1[1].body[3].weight.is_contiguous(memory_format=torch.channels_last)  # a 3x3 conv
    assert model.ocbe.t2_down[0].weight.is_contiguous()  # the OCBE stays NCHW (see OCBE.forward)
    model.eval()  # still allowed
    with pytest.raises(RuntimeError, match="prepared for inference"):
        model.train()
    with pytest.raises(RuntimeError, match="prepared for inference"):
        model.trainable_state_dict()


def test_a_folded_batchnorm_gives_the_hand_computed_value():
    """1x1 conv with weight 2 on x = 3 -> 6; BN (mean 1, var 3, eps 1, gamma 2, beta 1): 2 (6 - 1) / 2 + 1 = 6."""
    conv, bn = nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1, eps=1.0)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.running_mean.fill_(1.0), bn.running_var.fill_(3.0), bn.weight.fill_(2.0), bn.bias.fill_(1.0)
    network = nn.Sequential(conv, bn).eval()
    x = torch.full((1, 1, 2, 2), 3.0)
    assert fold_batch_norms(network, lambda: network(x)) == 1
    assert isinstance(network[1], nn.Identity)
    assert torch.equal(network(x), torch.full((1, 1, 2, 2), 6.0))


def test_a_batchnorm_that_does_not_read_its_convolution_is_left_alone():
    class Parallel(nn.Module):  # conv and BN registered one after the other, but side by side in the forward
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.conv(x) + self.bn(x)

    network = Parallel().eval()
    with torch.no_grad():
        network.bn.running_mean.fill_(0.5)
    x = torch.rand(1, 2, 4, 4)
    expected = network(x)
    assert fold_batch_norms(network, lambda: network(x)) == 0
    assert isinstance(network.bn, nn.BatchNorm2d) and torch.equal(network(x), expected)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(network.train(), lambda: network(x))


@pytest.mark.parametrize("border", ["mirror", "reflect"])
def test_the_blur_keeps_a_constant_map_and_treats_each_image_alone(border):
    """A normalised Gaussian with a mirrored border keeps a constant; images of a batch never mix."""
    constant = torch.full((1, 1, 40, 56), 2.5)
    torch.testing.assert_close(gaussian_blur(constant, 4.0, border), constant, atol=1e-6, rtol=0)
    batch = torch.rand(3, 2, 40, 56)
    alone = torch.cat([gaussian_blur(batch[i:i + 1], 4.0, border) for i in range(3)])
    torch.testing.assert_close(gaussian_blur(batch, 4.0, border), alone, atol=1e-6, rtol=0)


def test_a_large_cpu_batch_runs_in_chunks_with_the_same_maps_and_gates():
    """At 128 px a prepared model runs 16 images at once (CPU_CHUNK_PIXELS): 19 images go as 16 + 3."""
    torch.manual_seed(0)
    plain = ExpertTeacherStudent(ModelConfig(variant="full", image_size=128), pretrained=False).eval()
    prepared = ExpertTeacherStudent(ModelConfig(variant="full", image_size=128), pretrained=False).eval()
    prepared.load_state_dict(plain.state_dict())
    prepared.prepare_for_inference()
    assert CPU_CHUNK_PIXELS // (128 * 128) == 16
    images = torch.rand(19, 3, 128, 128)
    with torch.inference_mode(), capture_gates(plain) as plain_gates, capture_gates(prepared) as gates:
        expected, got = plain(images), prepared(images)
    torch.testing.assert_close(got.maps.fused, expected.maps.fused, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(got.maps.score, expected.maps.score, atol=TOLERANCE, rtol=0)
    assert [f.shape for f in got.reference] == [f.shape for f in expected.reference]
    assert sorted(gates) == sorted(plain_gates) and all(gates[k].shape[0] == 19 for k in gates)
    torch.testing.assert_close(gates["decoder.gii3"], plain_gates["decoder.gii3"], atol=TOLERANCE, rtol=0)
