"""One-Class Bottleneck Embedding: fuse the three teacher scales, then compress them."""

from __future__ import annotations

import torch
from torch import nn

from rdexpert.model.blocks import Bottleneck, bottleneck_width, conv_bn_relu


class OCBE(nn.Module):
    """Multi-scale feature fusion (MFF) followed by a one-class embedding (OCE).

    MFF brings T1 (stride 4) and T2 (stride 8) to stride 16 with stride-2 conv3x3
    and concatenates them with T3. OCE is a ResNet stage of bottlenecks with
    stride 2. For wide_resnet50_2 this gives 3072 channels at 16x16 and a
    2048x8x8 embedding at 256 px, as in the paper.
    """

    def __init__(self, channels: tuple[int, int, int], num_blocks: int = 3):
        super().__init__()
        c1, c2, c3 = channels
        self.t1_down = nn.Sequential(conv_bn_relu(c1, c2, stride=2), conv_bn_relu(c2, c3, stride=2))
        self.t2_down = conv_bn_relu(c2, c3, stride=2)
        out_channels = 2 * c3
        blocks = [Bottleneck(3 * c3, bottleneck_width(out_channels), out_channels, stride=2)]
        blocks += [Bottleneck(out_channels, bottleneck_width(out_channels), out_channels) for _ in range(num_blocks - 1)]
        self.embed = nn.Sequential(*blocks)
        self.out_channels = out_channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # NCHW even in a channels-last model (ExpertTeacherStudent.prepare_for_inference keeps these weights
        # NCHW): oneDNN runs these weight-heavy 16x16 and 8x8 convolutions faster so at small batches
        t1, t2, t3 = (f.contiguous() for f in features)
        fused = torch.cat([self.t1_down(t1), self.t2_down(t2), t3], dim=1)
        return self.embed(fused)
