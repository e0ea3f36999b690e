"""Guided Information Injection: teacher detail enters the decoder where the student agrees with it."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from rdexpert.model.blocks import conv_bn_relu

GATES = ("gated", "open", "closed")


class GuidedInjection(nn.Module):
    """GII at one decoder scale k (docs/design.md §3.3).

    ``F_k = fuse(T_k + down(T_{k-1}))`` gathers teacher detail; the per-pixel cosine
    ``s = cos(S_k, T_k)`` (detached) gates it: ``I = cbr(F_k * s + S_k * (1 - s))``
    and the next decoder stage receives ``cbr(concat[S_k, I])``. Where the
    student disagrees (a likely anomaly) little teacher detail flows in, so the
    anomaly does not leak through the skip.

    ``plain=True`` is the reference code's released behaviour: no gate,
    ``cbr(concat[S_k, F_k])``.
    """

    def __init__(self, channels: int, finer_channels: int, plain: bool = False):
        super().__init__()
        self.plain = plain
        self.down = conv_bn_relu(finer_channels, channels, kernel_size=1)
        self.fuse = conv_bn_relu(channels, channels)
        self.inject = None if plain else conv_bn_relu(channels, channels)
        self.merge = conv_bn_relu(2 * channels, channels)

    def teacher_detail(self, teacher: torch.Tensor, teacher_finer: torch.Tensor) -> torch.Tensor:
        finer = F.interpolate(teacher_finer, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(teacher + self.down(finer))

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, teacher_finer: torch.Tensor, gate: str = "gated"
    ) -> torch.Tensor:
        detail = self.teacher_detail(teacher, teacher_finer)
        if self.plain:
            return self.merge(torch.cat([student, detail], dim=1))
        similarity = self.similarity(student, teacher, gate)
        injected = self.inject(detail * similarity + student * (1 - similarity))
        return self.merge(torch.cat([student, injected], dim=1))

    @staticmethod
    def similarity(student: torch.Tensor, teacher: torch.Tensor, gate: str) -> torch.Tensor:
        """Per-pixel gate: the detached cosine, or constant 1 (open) / 0 (closed) for teaching."""
        if gate == "gated":
            return F.cosine_similarity(student, teacher, dim=1).unsqueeze(1).detach()
        if gate == "open":
            return torch.ones_like(student[:, :1])
        if gate == "closed":
            return torch.zeros_like(student[:, :1])
        raise ValueError(f"unknown GII gate {gate!r}; choose one of {GATES}")


@contextmanager
def capture_gates(model: nn.Module):
    """Record the gate ``s`` of every gated GII module during the forwards inside the block.

    Yields ``{module name: s}`` (N x 1 x H x W: every image that went through, in order, filled as the
    forwards run; a prepared model runs a large batch in chunks), so the app
    can show what GII let through without a second copy of the decoder; a forward hook
    recomputes ``s`` from the module's own inputs with :meth:`GuidedInjection.similarity`.
    Only this thread's forwards are recorded: the app's model is shared by concurrent requests.
    """
    captured: dict[str, torch.Tensor] = {}
    owner = threading.get_ident()

    def recorder(name: str):
        def record(module, args, kwargs, output):
            if threading.get_ident() != owner:
                return
            gate = args[3] if len(args) > 3 else kwargs.get("gate", "gated")
            s = module.similarity(args[0], args[1], gate).detach()
            captured[name] = torch.cat([captured[name], s]) if name in captured else s

        return record

    handles = [
        module.register_forward_hook(recorder(name), with_kwargs=True)
        for name, module in model.named_modules()
        if isinstance(module, GuidedInjection) and not module.plain
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
