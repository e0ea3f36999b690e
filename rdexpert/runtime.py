"""Where and in which precision the model runs: device choice and mixed precision (no rdexpert imports)."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; an explicit CUDA device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available on this machine; use --device cpu")
    return torch.device(device)


def autocast(device: torch.device, precision: str = "bf16"):
    """bf16 autocast on CUDA (no loss scaling needed) unless ``precision="fp32"``; full precision on CPU."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
