"""Losses of docs/design.md §3.2 on hand-made features with known answers."""

from __future__ import annotations

import torch

from rdexpert.training.losses import global_cosine_distance, resize_mask, student_loss, teacher_loss


def features(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, s, s, generator=g) for c, s in ((4, 16), (6, 8), (8, 4))]


def test_global_cosine_distance_known_values():
    a = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).view(1, 1, 2, 2)
    assert global_cosine_distance(a, a).item() == 0
    assert abs(global_cosine_distance(a, a.roll(1, dims=-1)).item() - 1) < 1e-6
    assert abs(global_cosine_distance(a, -a).item() - 2) < 1e-6


def test_teacher_loss_is_zero_when_teacher_equals_expert_and_no_defect():
    e = features(0)
    mask = torch.zeros(2, 1, 64, 64)
    assert teacher_loss(e, e, e, e, mask).item() < 1e-5


def test_teacher_loss_wants_orthogonal_features_inside_the_defect():
    e = features(0)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., :32, :] = 1  # top half is a defect at every scale
    inside = [f.clone() for f in e]
    for f in inside:  # top half orthogonal to the expert: each channel pair (a, b) becomes (-b, a)
        top = f[..., : f.shape[-2] // 2, :]
        rotated = torch.empty_like(top)
        rotated[:, 0::2], rotated[:, 1::2] = -top[:, 1::2], top[:, 0::2]
        f[..., : f.shape[-2] // 2, :] = rotated
    ideal = teacher_loss(e, inside, e, inside, mask).item()
    unchanged = teacher_loss(e, e, e, inside, mask).item()
    assert ideal < 0.05 < unchanged


def test_resize_mask_binarises():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :3, :] = 1
    small = resize_mask(mask, (4, 4))
    assert set(small.unique().tolist()) <= {0.0, 1.0} and small.shape == (1, 4, 4)


def test_student_loss_sums_every_student_target_pair():
    s, t = features(1), features(2)
    one = student_loss([s], [t]).item()
    assert abs(student_loss([s, s], [t, t]).item() - 4 * one) < 1e-4
    assert student_loss([t], [t]).item() < 1e-5
