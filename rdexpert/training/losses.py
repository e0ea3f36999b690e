"""The two losses of RD with Expert (docs/design.md §3.2), written as sums over the three scales."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rdexpert.model.anomaly_map import pixel_cosine_distance

Features = list[torch.Tensor]


def global_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """D(a, b): batch mean of 1 - cos between whole flattened feature maps (RD's loss)."""
    a, b = (t.flatten(1) if t.dtype == torch.float64 else t.flatten(1).float() for t in (a, b))
    return (1 - F.cosine_similarity(a, b, dim=1)).mean()


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring the (B, 1, H, W) synthetic mask to a feature scale: bilinear, then binarised (> 0.5)."""
    return (F.interpolate(mask.float(), size=size, mode="bilinear", align_corners=False) > 0.5).float()[:, 0]


def chained_masks(mask: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The released code's masks: each scale resized from the *previous* binarised one (256→64→32→16),
    bilinear with ``align_corners=True``, kept where ≥ 0.5. Returns (B, h, w) per size, in the given order."""
    masks, current = [], mask.float()
    for size in sorted(sizes, key=lambda s: -s[0] * s[1]):
        current = (F.interpolate(current, size=size, mode="bilinear", align_corners=True) >= 0.5).float()
        masks.append((size, current[:, 0]))
    by_size = dict(masks)
    return [by_size[tuple(size)] for size in sizes]


MASK_RESIZES = ("chained", "direct")


def teacher_loss(
    teacher_clean: Features, teacher_augmented: Features, expert_clean: Features, expert_augmented: Features,
    mask: torch.Tensor,
    mask_resize: str = "direct",
) -> torch.Tensor:
    """L_T: stay on the expert for normal content, turn orthogonal to it inside synthetic defects.

    Σ_k Dp(T_k(x), E_k(x)) + L1(1 - cos(T_k(x_aug), E_k(x)), M_k) + D(T_k(x_aug), E_k(x_aug)).
    ``mask_resize`` says how M_k comes from the image-size mask: "direct" (:func:`resize_mask`) or
    "chained" (:func:`chained_masks`, the released code).
    """
    if mask_resize not in MASK_RESIZES:
        raise ValueError(f"unknown mask_resize {mask_resize!r}; choose one of {MASK_RESIZES}")
    sizes = [tuple(t.shape[-2:]) for t in teacher_clean]
    masks = chained_masks(mask, sizes) if mask_resize == "chained" else [resize_mask(mask, s) for s in sizes]
    total = torch.zeros((), device=mask.device)
    for t, t_aug, e, e_aug, m in zip(teacher_clean, teacher_augmented, expert_clean, expert_augmented, masks):
        total = total + pixel_cosine_distance(t, e).mean()
        total = total + F.l1_loss(pixel_cosine_distance(t_aug, e), m)
        total = total + global_cosine_distance(t_aug, e_aug)
    return total


def student_loss(students: list[Features], targets: list[Features]) -> torch.Tensor:
    """L_S: every student output (from x, and from x_aug) must match every clean target (T(x), E(x)).

    With ``students=[S(x), S(x_aug)]`` and ``targets=[T(x), E(x)]`` this is the
    full model's four-term loss; plain RD is ``students=[S(x)], targets=[T(x)]``.
    """
    total = None
    for student in students:
        for target in targets:
            for s, t in zip(student, target):
                term = global_cosine_distance(s, t)
                total = term if total is None else total + term
    return total
