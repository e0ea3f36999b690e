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


BLUR_BORDERS = ("reflect", "mirror")


def _pad_symmetric(maps: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two dims by mirroring *with* the edge sample (d c b a | a b c d), scipy's ``reflect``."""
    for dim in (-1, -2):
        size = maps.shape[dim]
        if not torch.jit.is_tracing() and pad > size:  # (traced shapes are fixed by the checkpoint)
            raise ValueError(f"blur needs maps of at least {pad} px per side for its border, got {size}")
        before = maps.narrow(dim, 0, pad).flip(dim)
        after = maps.narrow(dim, size - pad, pad).flip(dim)
        maps = torch.cat([before, maps, after], dim)
    return maps


def gaussian_blur(maps: torch.Tensor, sigma: float, border: str = "mirror") -> torch.Tensor:
    """Gaussian blur of (B, C, H, W) maps, the kernel of scipy's ``gaussian_filter`` (truncate 4).

    ``border="reflect"`` repeats the edge sample as scipy's default mode (the released code's
    blur); ``"mirror"`` does not (torch's ``reflect`` padding, torchvision's ``gaussian_blur``).
    The kernel has a fixed shape that does not depend on the input's, so the graph exports to
    ONNX (torchvision's ``expand`` by the traced channel count does not).
    """
    if border not in BLUR_BORDERS:
        raise ValueError(f"unknown blur border {border!r}; choose one of {BLUR_BORDERS}")
    size = blur_kernel_size(sigma)
    limit = (size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-limit, limit, steps=size, dtype=maps.dtype, device=maps.device)
    kernel1d = torch.softmax(x.div(sigma).pow(2).neg(), dim=0)
    kernel = (kernel1d.unsqueeze(-1) * kernel1d).view(1, 1, size, size)
    height, width = maps.shape[-2:]
    flat = maps.reshape(-1, 1, height, width)
    padded = _pad_symmetric(flat, size // 2) if border == "reflect" else F.pad(flat, [size // 2] * 4, mode="reflect")
    return F.conv2d(padded, kernel).reshape(maps.shape)


def compute_anomaly_maps(
    student: list[torch.Tensor],
    reference: list[torch.Tensor],
    size: tuple[int, int],
    sigma: float = BLUR_SIGMA,
    align_corners: bool = False,
    blur_border: str = "mirror",
) -> AnomalyMaps:
    """Map each scale, upsample bilinearly to ``size``, sum, blur with a Gaussian; score = max of the map.

    ``align_corners`` and ``blur_border`` are recipe choices (rdexpert.recipe): the released code uses
    ``True`` and ``"reflect"``.
    """
    scales = [
        F.interpolate(pixel_cosine_distance(s, r).unsqueeze(1), size=size, mode="bilinear", align_corners=align_corners)
        for s, r in zip(student, reference)
    ]
    fused = torch.stack(scales).sum(0)
    if sigma > 0:
        fused = gaussian_blur(fused, sigma, blur_border)
    return AnomalyMaps(scales=scales, fused=fused, score=fused.flatten(1).amax(1))
