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


COSINE_EPS = 1e-8  # each norm's floor, as F.cosine_similarity's


def pixel_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cosine over channels, per pixel, in float32 (or float64): (B, C, h, w) x2 -> (B, h, w).

    The anomaly measure of the maps, and the teacher loss's per-pixel term (rdexpert.training.losses).
    ``F.cosine_similarity``'s value (each norm floored at 1e-8) written as dot / (|a| |b|), which is faster
    on the CPU (it divides both inputs by their norms first); the same to float rounding.
    """
    a, b = (t if t.dtype == torch.float64 else t.float() for t in (a, b))  # float64 stays (exact checks)
    norm_a = torch.linalg.vector_norm(a, dim=1).clamp_min(COSINE_EPS)
    norm_b = torch.linalg.vector_norm(b, dim=1).clamp_min(COSINE_EPS)
    return 1 - (a * b).sum(1) / (norm_a * norm_b)


def blur_kernel_size(sigma: float) -> int:
    """Odd kernel covering +-4 sigma, as RD's reference (scipy's gaussian_filter truncate=4)."""
    return 2 * int(4 * sigma + 0.5) + 1


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian of :func:`blur_kernel_size` taps."""
    size = blur_kernel_size(sigma)
    limit = (size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-limit, limit, steps=size, dtype=dtype, device=device)
    return torch.softmax(x.div(sigma).pow(2).neg(), dim=0)


BLUR_BORDERS = ("reflect", "mirror")


def _pad_symmetric(maps: torch.Tensor, pad: int, dims: tuple[int, ...] = (-1, -2)) -> torch.Tensor:
    """Pad ``dims`` by mirroring *with* the edge sample (d c b a | a b c d), scipy's ``reflect``."""
    for dim in dims:
        size = maps.shape[dim]
        if not torch.jit.is_tracing() and pad > size:  # (traced shapes are fixed by the checkpoint)
            raise ValueError(f"blur needs maps of at least {pad} px per side for its border, got {size}")
        before = maps.narrow(dim, 0, pad).flip(dim)
        after = maps.narrow(dim, size - pad, pad).flip(dim)
        maps = torch.cat([before, maps, after], dim)
    return maps


def _blur_operator(size: int, kernel1d: torch.Tensor, border: str) -> torch.Tensor:
    """The 1-D blur of ``size`` samples, its border included, as a (size, size) matrix: row i weighs the inputs of output i.

    Built by blurring the identity (each column an impulse) the way the maps would be padded and convolved.
    """
    pad = kernel1d.numel() // 2
    impulses = torch.eye(size, dtype=kernel1d.dtype, device=kernel1d.device).view(1, 1, size, size)
    padded = _pad_symmetric(impulses, pad, dims=(-2,)) if border == "reflect" \
        else F.pad(impulses, [0, 0, pad, pad], mode="reflect")
    return F.conv1d(padded[0, 0].T.unsqueeze(1), kernel1d.view(1, 1, -1)).squeeze(1).T


def gaussian_blur(maps: torch.Tensor, sigma: float, border: str = "mirror") -> torch.Tensor:
    """Gaussian blur of (B, C, H, W) maps, the kernel of scipy's ``gaussian_filter`` (truncate 4).

    ``border="reflect"`` repeats the edge sample as scipy's default mode (the released code's
    blur); ``"mirror"`` does not (torch's ``reflect`` padding, torchvision's ``gaussian_blur``).
    The Gaussian is separable, so the blur is two small matrix products, ``rows @ maps @ columns.T``, with the
    borders inside the matrices (:func:`_blur_operator`): on the CPU that is 5 to 15 times faster than the
    equal 2-D convolution with its 33 x 33 kernel (bench/profile_stages.py; oneDNN's single-channel
    convolutions are slow, above all in a batch) and the same to float rounding (~1e-6). Nothing depends
    on the batch size, so the graph exports to ONNX with a dynamic batch axis.
    """
    if border not in BLUR_BORDERS:
        raise ValueError(f"unknown blur border {border!r}; choose one of {BLUR_BORDERS}")
    kernel1d = gaussian_kernel1d(sigma, maps.dtype, maps.device)
    height, width = maps.shape[-2:]
    return _blur_operator(height, kernel1d, border) @ maps @ _blur_operator(width, kernel1d, border).T


def scale_maps(
    student: list[torch.Tensor], reference: list[torch.Tensor], size: tuple[int, int], align_corners: bool = False
) -> list[torch.Tensor]:
    """Each scale's distance map, upsampled bilinearly to ``size``: (B, 1, H, W) each."""
    return [
        F.interpolate(pixel_cosine_distance(s, r).unsqueeze(1), size=size, mode="bilinear", align_corners=align_corners)
        for s, r in zip(student, reference)
    ]


def map_scores(fused: torch.Tensor) -> torch.Tensor:
    """Image scores (B,): the max of each fused map."""
    return fused.flatten(1).amax(1)


def compute_anomaly_maps(
    student: list[torch.Tensor],
    reference: list[torch.Tensor],
    size: tuple[int, int],
    sigma: float = BLUR_SIGMA,
    align_corners: bool = False,
    blur_border: str = "mirror",
) -> AnomalyMaps:
    """Map each scale, upsample bilinearly to ``size``, sum, blur with a Gaussian; score = max of the map.

    ``align_corners`` and ``blur_border`` are recipe choices (rdexpert.training.recipe): the released code uses
    ``True`` and ``"reflect"``.
    """
    scales = scale_maps(student, reference, size, align_corners)
    fused = torch.stack(scales).sum(0)
    if sigma > 0:
        fused = gaussian_blur(fused, sigma, blur_border)
    return AnomalyMaps(scales=scales, fused=fused, score=map_scores(fused))
