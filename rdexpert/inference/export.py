"""ONNX export: the full forward (teacher, student, anomaly maps, score) as one graph.

Input ``image``: B x 3 x S x S float32 RGB in [0, 1], fitted like
``rdexpert.data.fit_image`` with the checkpoint's ``input_fit`` (normalisation is
inside the graph). Outputs: ``anomaly_map`` B x 1 x S x S (fused, blurred),
``scale_maps`` B x 3 x S x S (strides 4, 8, 16, upsampled, not blurred), ``score``
B (max of the fused map over the whole square: for a "pad" checkpoint, cut the
map to ``rdexpert.data.content_box`` and take its max, as the Predictor does).
The batch axis is dynamic; S is fixed by the checkpoint. The checkpoint's
config.json (with the calibrated threshold) is stored in the model's metadata
under ``rdexpert_config``, and the threshold also as ``threshold``.

Exporters: the current one, ``torch.onnx.export(dynamo=True)`` (needs
``onnxscript``; opset 18 or later), is tried first; when it raises, or an opset
below 18 is asked for, the TorchScript-based exporter (``dynamo=False``) writes
the model instead, with a one-line warning. Both give the same graph semantics
(the model has no data-dependent control flow); the metadata key ``exporter``
says which one wrote the file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rdexpert.checkpoint.folder import CheckpointInfo
from rdexpert.checkpoint.io import atomic_write
from rdexpert.extras import optional_module
from rdexpert.inference.ood import pooled_features
from rdexpert.model import ExpertTeacherStudent

OPSET = 18  # the dynamo exporter's lowest opset (it cannot convert Pad down to 17)
MIN_OPSET = 11  # the lowest the TorchScript exporter writes this graph with
EXPORTERS = ("auto", "dynamo", "torchscript")  # auto: dynamo, TorchScript when that fails
OUTPUTS = ("anomaly_map", "scale_maps", "score")
POOLED = "expert_pooled"  # optional fourth output: the expert's pooled features, for the out-of-distribution check
TOLERANCE = 1e-4  # max |ONNX Runtime - PyTorch| on the maps, in raw score units (maps reach ~0.1 .. 3)


def output_names(pooled_expert: bool = False) -> list[str]:
    """The graph's outputs, in order: :data:`OUTPUTS`, then :data:`POOLED` when asked for."""
    return list(OUTPUTS) + ([POOLED] if pooled_expert else [])


class ExportedForward(nn.Module):
    """The model with the inference switches fixed and plain tensor outputs."""

    def __init__(self, model: ExpertTeacherStudent, reference: str | None = None, gate: str = "gated",
                 pooled_expert: bool = False):
        super().__init__()
        self.model, self.reference, self.gate, self.pooled_expert = model, reference, gate, pooled_expert

    @property
    def output_names(self) -> list[str]:
        return output_names(self.pooled_expert)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.model(image, reference=self.reference, gate=self.gate).maps
        outputs = (maps.fused, torch.cat(maps.scales, dim=1), maps.score)
        return outputs + (pooled_features(self.model.expert(image)),) if self.pooled_expert else outputs


def _export_dynamo(wrapper: nn.Module, example: torch.Tensor, tmp: str, opset: int) -> None:
    if opset < OPSET:
        raise ValueError(f"opset {opset} is below {OPSET}, the lowest the dynamo exporter writes")
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        wrapper, (example,), tmp, dynamo=True, external_data=False, verbose=False, input_names=["image"],
        output_names=wrapper.output_names, dynamic_shapes=({0: batch},), opset_version=opset,
    )
    written = _opset(tmp)
    if written != opset:  # the exporter logs a failed down-conversion and keeps its own opset
        raise ValueError(f"asked for opset {opset}, the dynamo exporter wrote {written}")


def _export_torchscript(wrapper: nn.Module, example: torch.Tensor, tmp: str, opset: int) -> None:
    dynamic = {"image": {0: "batch"}, **{name: {0: "batch"} for name in wrapper.output_names}}
    with warnings.catch_warnings():  # the exporter's deprecation notice and constant-folding chatter
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            wrapper, (example,), tmp, dynamo=False, input_names=["image"], output_names=wrapper.output_names,
            dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True,
        )


def _opset(path: str | Path) -> int:
    onnx = optional_module("onnx")

    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _write_graph(wrapper: nn.Module, example: torch.Tensor, tmp: str, opset: int, exporter: str) -> str:
    """Write the graph to ``tmp`` with ``exporter``; return the exporter that wrote it."""
    if exporter == "torchscript":
        _export_torchscript(wrapper, example, tmp, opset)
        return "torchscript"
    try:
        _export_dynamo(wrapper, example, tmp, opset)
        return "dynamo"
    except Exception as error:  # any failure of the new exporter: torch.export, onnxscript, version conversion
        if exporter == "dynamo":
            raise
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        warnings.warn(f"the dynamo ONNX exporter failed ({reason}); exported with the TorchScript exporter instead",
                      UserWarning, stacklevel=3)
    _export_torchscript(wrapper, example, tmp, opset)
    return "torchscript"


def export_onnx(
    model: ExpertTeacherStudent,
    path: str | Path,
    config: dict | None = None,
    reference: str | None = None,
    gate: str = "gated",
    opset: int | None = None,
    exporter: str = "auto",
    pooled_expert: bool = False,
) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically, one file); ``config`` goes into the metadata.

    ``exporter``: ``"auto"`` (dynamo, else TorchScript with a warning), ``"dynamo"`` or ``"torchscript"``;
    the one used is stored under the metadata key ``exporter``. ``opset`` defaults to :data:`OPSET`.
    ``pooled_expert``: add the output :data:`POOLED` (B x D, :func:`rdexpert.inference.ood.pooled_features` of the expert).
    """
    onnx = optional_module("onnx")

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    opset = OPSET if opset is None else int(opset)
    highest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= highest:  # before any exporter runs (they print tracebacks for impossible ones)
        raise ValueError(f"opset {opset} is not one this ONNX {onnx.__version__} writes: choose {MIN_OPSET} to "
                         f"{highest} (default {OPSET}; below {OPSET} the TorchScript exporter writes it)")
    model = model.to("cpu").eval()
    wrapper = ExportedForward(model, reference, gate, pooled_expert).eval()
    size = model.config.image_size
    example = torch.rand(2, 3, size, size)

    def write(tmp: str) -> None:
        used = _write_graph(wrapper, example, tmp, opset, exporter)
        proto = onnx.load(tmp)
        metadata = {"reference": reference or model.config.default_reference, "gate": gate, "image_size": str(size),
                    "exporter": used, "torch": torch.__version__, "input": input_preparation(model.config)}
        if config is not None:
            saved = {k: v for k, v in config.items() if k != "source"}
            metadata["rdexpert_config"] = json.dumps(saved)
            threshold = CheckpointInfo.from_config(config).threshold
            if threshold is not None:
                metadata["threshold"] = repr(float(threshold))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)

    with torch.no_grad():
        return atomic_write(path, write)


def input_preparation(config) -> str:
    """How to prepare the exported model's input, in words (stored in its metadata under ``input``): resizing with
    another library than PIL moves the maps (OpenCV's bilinear: scores off by ~0.03)."""
    size = config.image_size
    fit = ("resized to S x S" if config.input_fit == "squash" else
           "longer side resized to S, centred, the rest edge-filled (maps then cover the picture's box only)")
    return (f"RGB, float32 in [0, 1], shape B x 3 x S x S with S = {size}; {fit}; resize with PIL "
            "(Image.resize, BILINEAR, as rdexpert.data.fit_image does), not OpenCV; no mean/std normalisation: "
            "the graph normalises with the backbone's mean and std")


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported model (``exporter``, ``threshold``, ``rdexpert_config`` ...), weights not read."""
    onnx = optional_module("onnx")

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props} | {"opset": str(_opset(path))}


def compare_with_onnxruntime(
    model: ExpertTeacherStudent, path: str | Path, images: torch.Tensor, reference: str | None = None, gate: str = "gated"
) -> dict[str, float]:
    """Max absolute difference between ONNX Runtime and PyTorch (float32, CPU) for each output."""
    onnxruntime = optional_module("onnxruntime")

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(list(OUTPUTS), {"image": images.numpy().astype(np.float32)})
    with torch.no_grad():
        torch_outputs = ExportedForward(model.to("cpu").eval(), reference, gate)(images)
    return {
        name: float(np.abs(a - b.numpy()).max()) for name, a, b in zip(OUTPUTS, onnx_outputs, torch_outputs)
    }
