"""Inference-only rewrite of a network: BatchNorm folded into the convolution before it.

In eager PyTorch an eval-mode BatchNorm is a pass of its own over every activation; folded into the
preceding convolution's weights and bias it costs nothing (the stages past the last feature are dropped
when the backbone is built, rdexpert.model.backbones.drop_unused_stages). The maps change by float rounding only (~1e-6);
a rewritten network can no longer be trained (bench/profile_stages.py: time by stage, before and after).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def _adjacent_pairs(network: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """``(parent, conv name, BN name)`` for every convolution registered right before a BatchNorm2d."""
    pairs = []
    for parent in network.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, CONVOLUTIONS) and type(bn) in (nn.BatchNorm2d, BatchNormAct2d) \
                    and bn.track_running_stats and bn.num_features == conv.out_channels:
                pairs.append((parent, conv_name, bn_name))
    return pairs


def _what_is_left(bn: nn.Module) -> nn.Module:
    """What a BatchNorm becomes once folded: nothing, or timm's BatchNormAct2d's dropout and activation."""
    return nn.Sequential(bn.drop, bn.act) if isinstance(bn, BatchNormAct2d) else nn.Identity()


def fold_batch_norms(network: nn.Module, probe: Callable[[], object]) -> int:
    """Fold each eval BatchNorm2d that reads a convolution's output straight into that convolution; in place.

    Candidates are a convolution and a BatchNorm registered one after the other (as in ``nn.Sequential``
    and timm's blocks); ``probe`` runs a forward that uses every candidate, and a pair is folded only
    where the BatchNorm was seen reading exactly the convolution's output. Returns how many were folded.
    """
    if network.training:
        raise ValueError("fold_batch_norms needs a network in eval mode (BatchNorm then uses its running statistics)")
    pairs = _adjacent_pairs(network)
    outputs: dict[int, torch.Tensor] = {}  # id(conv) -> its output in the probe
    confirmed: set[int] = set()  # id(bn) seen reading its conv's output

    def remember(conv, args, output):
        outputs[id(conv)] = output

    def check(conv):
        def hook(bn, args):
            if outputs.get(id(conv)) is args[0]:
                confirmed.add(id(bn))
        return hook

    handles = []
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        handles += [conv.register_forward_hook(remember), bn.register_forward_pre_hook(check(conv))]
    try:
        with torch.inference_mode():
            probe()
    finally:
        for handle in handles:
            handle.remove()
    folded = 0
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if id(bn) in confirmed:
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d)))
            setattr(parent, bn_name, _what_is_left(bn))
            folded += 1
    return folded
