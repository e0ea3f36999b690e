"""The Expert-Teacher-Student network: shapes, variants, GII gate and the inference switches."""

from __future__ import annotations

import pytest
import torch

from rdexpert.model import VARIANTS, ExpertTeacherStudent, ModelConfig, capture_gates, compute_anomaly_maps
from rdexpert.model.gii import GuidedInjection


def small(variant: str, backbone: str = "tf_efficientnet_lite0", pretrained: bool = False) -> ExpertTeacherStudent:
    torch.manual_seed(0)
    return ExpertTeacherStudent(ModelConfig(backbone=backbone, variant=variant, image_size=64), pretrained).eval()


def test_wide_resnet50_reproduces_the_paper_shapes():
    model = ExpertTeacherStudent(ModelConfig(backbone="wide_resnet50_2", variant="full"), pretrained=False).eval()
    with torch.no_grad():
        teacher = model.teacher(torch.rand(1, 3, 256, 256))
        embedding = model.ocbe(teacher)
        student = model.student(teacher)
    assert [tuple(t.shape[1:]) for t in teacher] == [(256, 64, 64), (512, 32, 32), (1024, 16, 16)]
    assert tuple(embedding.shape[1:]) == (2048, 8, 8)
    assert [tuple(s.shape) for s in student] == [tuple(t.shape) for t in teacher]
    fused_channels = model.ocbe.embed[0].body[0].in_channels
    assert fused_channels == 3072


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_returns_features_maps_and_scores(variant):
    model = small(variant)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert [s.shape for s in out.student] == [r.shape for r in out.reference]
    assert len(out.maps.scales) == 3 and all(m.shape == (2, 1, 64, 64) for m in out.maps.scales)
    assert out.maps.fused.shape == (2, 1, 64, 64)
    assert torch.allclose(out.maps.score, out.maps.fused.flatten(1).amax(1))
    assert (model.trained_teacher is not None) == VARIANTS[variant].train_teacher


def test_expert_is_frozen_and_stays_in_eval_mode():
    model = small("full")
    model.train()
    assert not model.expert.training and model.trained_teacher.training
    assert all(not p.requires_grad for p in model.expert.parameters())
    assert not any(k.startswith("expert.") for k in model.trainable_state_dict())


def test_decoder_channels_follow_the_backbone():
    model = small("full", backbone="tf_efficientnet_lite2")
    with torch.no_grad():
        student = model.student(model.teacher(torch.rand(1, 3, 64, 64)))
    assert [s.shape[1] for s in student] == [24, 48, 120]


def test_gii_gate_controls_how_much_teacher_detail_flows_in():
    torch.manual_seed(0)
    gii = GuidedInjection(channels=8, finer_channels=4).eval()
    student = torch.randn(1, 8, 6, 6)
    teacher, finer = torch.randn(1, 8, 6, 6), torch.randn(1, 4, 12, 12)
    other_teacher, other_finer = torch.randn(1, 8, 6, 6), torch.randn(1, 4, 12, 12)
    with torch.no_grad():
        closed = gii(student, teacher, finer, "closed"), gii(student, other_teacher, other_finer, "closed")
        opened = gii(student, teacher, finer, "open"), gii(student, other_teacher, other_finer, "open")
        # the teacher equal to the student: s = 1 everywhere, so gated == open
        same = gii(student, student, finer, "gated"), gii(student, student, finer, "open")
    assert torch.allclose(*closed)  # closed gate: nothing from the teacher gets in
    assert not torch.allclose(*opened)
    assert torch.allclose(*same, atol=1e-5)
    s = GuidedInjection.similarity(student, -student, "gated")
    assert torch.allclose(s, -torch.ones_like(s))
    with pytest.raises(ValueError, match="gate"):
        gii(student, teacher, finer, "half")


def test_captured_gate_is_the_cosine_of_student_and_teacher():
    """capture_gates (the app's view of s) records what GII used: cos(S_3, T_3) per pixel, 1 when open."""
    model = small("full")
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), capture_gates(model) as gates:
        model(images)
    assert sorted(gates) == ["decoder.gii2", "decoder.gii3"]
    with torch.no_grad():
        teacher = model.teacher(images)
        s3 = model.decoder.stage3(model.ocbe(teacher))
    t3 = teacher[2]
    by_hand = (s3 * t3).sum(1) / (s3.norm(dim=1) * t3.norm(dim=1)).clamp_min(1e-8)
    assert gates["decoder.gii3"].shape == (1, 1, *t3.shape[-2:])
    assert torch.allclose(gates["decoder.gii3"][:, 0], by_hand, atol=1e-5)
    with torch.no_grad(), capture_gates(model) as opened:
        model(images, gate="open")
    assert all(torch.equal(s, torch.ones_like(s)) for s in opened.values())
    assert not any(m._forward_hooks for m in model.modules())  # the hooks are gone after the block
    plain_rd = small("rd")  # no GII: nothing to record
    with torch.no_grad(), capture_gates(plain_rd) as none:
        plain_rd(images)
    assert none == {}


def test_plain_skip_has_no_gate():
    gii = GuidedInjection(channels=8, finer_channels=4, plain=True)
    assert gii.inject is None


def test_reference_switch_compares_against_the_expert():
    model = small("full")
    with torch.no_grad():
        for p in model.trained_teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.rand(1, 3, 64, 64)
        teacher_map = model(x, reference="teacher").maps.fused
        expert_map = model(x, reference="expert").maps.fused
    assert not torch.allclose(teacher_map, expert_map)
    rd = small("rd")  # teacher is the expert: the switch changes nothing
    with torch.no_grad():
        assert torch.allclose(rd(x, reference="teacher").maps.fused, rd(x, reference="expert").maps.fused)
    with pytest.raises(ValueError, match="reference"):
        model(x, reference="student")


def test_anomaly_map_is_zero_for_identical_features_and_peaks_where_they_differ():
    features = [torch.randn(1, 4, s, s) for s in (16, 8, 4)]
    maps = compute_anomaly_maps(features, [f.clone() for f in features], (64, 64))
    assert maps.fused.abs().max() < 1e-5
    changed = [f.clone() for f in features]
    changed[0][..., 12:16, 12:16] *= -1
    maps = compute_anomaly_maps(features, changed, (64, 64))
    peak = divmod(int(maps.fused[0, 0].argmax()), 64)
    assert 40 <= peak[0] < 64 and 40 <= peak[1] < 64
    assert maps.scales[1].abs().max() < 1e-5
