"""Anomaly maps: per-scale cosine distance, upsampled, summed and blurred (RD's recipe)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur

BLUR_SIGMA = 4.0


@dataclass
class AnomalyMaps:
    """Per-scale maps ``[M1, M2, M3]`` and the fused map, each (B, 1, H, W), plus image scores (B,)."""

    scales: list[torch.Tensor]
    fused: torch.Tensor
    score: torch.Tensor


def cosine_distance_map(student: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1 - cosine over channels, per pixel: (B, C, h, w) x2 -> (B, 1, h, w)."""
    return 1 - F.cosine_similarity(student.float(), reference.float(), dim=1).unsqueeze(1)


def compute_anomaly_maps(
    student: list[torch.Tensor],
    reference: list[torch.Tensor],
    size: tuple[int, int],
    sigma: float = BLUR_SIGMA,
) -> AnomalyMaps:
    """Map each scale, upsample bilinearly to ``size``, sum, blur with a Gaussian; score = max of the map."""
    scales = [
        F.interpolate(cosine_distance_map(s, r), size=size, mode="bilinear", align_corners=False)
        for s, r in zip(student, reference)
    ]
    fused = torch.stack(scales).sum(0)
    if sigma > 0:
        kernel = 2 * int(4 * sigma + 0.5) + 1
        fused = gaussian_blur(fused, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
    return AnomalyMaps(scales=scales, fused=fused, score=fused.flatten(1).amax(1))
