"""Student decoder: a mirrored ResNet that rebuilds the teacher's three scales from the embedding."""

from __future__ import annotations

import torch
from torch import nn

from rdexpert.model.blocks import UpBottleneck, bottleneck_width
from rdexpert.model.gii import GuidedInjection

SKIPS = ("none", "gated", "plain")


def _stage(in_channels: int, out_channels: int, num_blocks: int) -> nn.Sequential:
    width = bottleneck_width(out_channels)
    blocks = [UpBottleneck(in_channels, width, out_channels, upsample=True)]
    blocks += [UpBottleneck(out_channels, width, out_channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class Decoder(nn.Module):
    """Decode S3 (stride 16), S2 (stride 8), S1 (stride 4) with the teacher's channel counts.

    ``skip`` chooses what enters between stages: ``none`` (plain RD), ``gated``
    (GII) or ``plain`` (ungated skip fusion, the reference code's released mode).
    """

    def __init__(
        self,
        channels: tuple[int, int, int],
        embedding_channels: int,
        skip: str = "gated",
        num_blocks: tuple[int, int, int] = (3, 4, 6),
    ):
        super().__init__()
        if skip not in SKIPS:
            raise ValueError(f"unknown skip mode {skip!r}; choose one of {SKIPS}")
        c1, c2, c3 = channels
        self.skip = skip
        self.stage3 = _stage(embedding_channels, c3, num_blocks[0])
        self.stage2 = _stage(c3, c2, num_blocks[1])
        self.stage1 = _stage(c2, c1, num_blocks[2])
        self.gii3 = self.gii2 = None
        if skip != "none":
            self.gii3 = GuidedInjection(c3, c2, plain=skip == "plain")
            self.gii2 = GuidedInjection(c2, c1, plain=skip == "plain")

    def forward(
        self, embedding: torch.Tensor, teacher: list[torch.Tensor], gate: str = "gated"
    ) -> list[torch.Tensor]:
        """Return ``[S1, S2, S3]``; ``teacher`` (the encoder features of the same image) feeds the skips."""
        t1, t2, t3 = teacher
        s3 = self.stage3(embedding)
        s2 = self.stage2(s3 if self.gii3 is None else self.gii3(s3, t3, t2, gate))
        s1 = self.stage1(s2 if self.gii2 is None else self.gii2(s2, t2, t1, gate))
        return [s1, s2, s3]
