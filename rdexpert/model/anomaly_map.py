"""Anomaly maps: per-scale cosine distance, upsampled, summed and blurred (RD's recipe)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

BLUR_SIGMA = 4.0


@dataclass
class AnomalyMaps:
    """Per-scale maps ``[M1, M2, M3]`` and the fused map, each (B, 1, H, W), plus image scores (B,)."""

    scales: list[torch.Tensor]
    fused: torch.Tensor
    score: torch.Tensor


def pixel_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cosine over channels, per pixel, in float32: (B, C, h, w) x2 -> (B, h, w).

    The anomaly measure of the maps, and the teacher loss's per-pixel term (rdexpert.losses).
    """
    return 1 - F.cosine_similarity(a.float(), b.float(), dim=1)


def blur_kernel_size(sigma: float) -> int:
    """Odd kernel covering +-4 sigma, as RD's reference (scipy's gaussian_filter truncate=4)."""
    return 2 * int(4 * sigma + 0.5) + 1


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, C, H, W) maps with reflect padding.

    Numerically the same as torchvision's ``gaussian_blur`` (same kernel, padding
    and conv2d), but the kernel has a fixed shape that does not depend on the
    input's, so the graph exports to ONNX (torchvision's ``expand`` by the traced
    channel count does not).
    """
    size = blur_kernel_size(sigma)
    limit = (size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-limit, limit, steps=size, dtype=maps.dtype, device=maps.device)
    kernel1d = torch.softmax(x.div(sigma).pow(2).neg(), dim=0)
    kernel = (kernel1d.unsqueeze(-1) * kernel1d).view(1, 1, size, size)
    height, width = maps.shape[-2:]
    flat = maps.reshape(-1, 1, height, width)
    padded = F.pad(flat, [size // 2] * 4, mode="reflect")
    return F.conv2d(padded, kernel).reshape(maps.shape)


def compute_anomaly_maps(
    student: list[torch.Tensor],
    reference: list[torch.Tensor],
    size: tuple[int, int],
    sigma: float = BLUR_SIGMA,
) -> AnomalyMaps:
    """Map each scale, upsample bilinearly to ``size``, sum, blur with a Gaussian; score = max of the map."""
    scales = [
        F.interpolate(pixel_cosine_distance(s, r).unsqueeze(1), size=size, mode="bilinear", align_corners=False)
        for s, r in zip(student, reference)
    ]
    fused = torch.stack(scales).sum(0)
    if sigma > 0:
        fused = gaussian_blur(fused, sigma)
    return AnomalyMaps(scales=scales, fused=fused, score=fused.flatten(1).amax(1))
