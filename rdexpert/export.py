"""ONNX export: the full forward (teacher, student, anomaly maps, score) as one graph.

Input ``image``: B x 3 x S x S float32 RGB in [0, 1], resized like
``rdexpert.data.resize_image`` (normalisation is inside the graph). Outputs:
``anomaly_map`` B x 1 x S x S (fused, blurred), ``scale_maps`` B x 3 x S x S
(strides 4, 8, 16, upsampled, not blurred), ``score`` B (max of the fused map).
The batch axis is dynamic; S is fixed by the checkpoint. The checkpoint's
config.json (with the calibrated threshold) is stored in the model's metadata
under ``rdexpert_config``, and the threshold also as ``threshold``.

Uses the TorchScript-based exporter (``dynamo=False``): it needs no extra
package, and the model has no data-dependent control flow.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointInfo
from .io import atomic_write
from .model import ExpertTeacherStudent

OPSET = 17
OUTPUTS = ("anomaly_map", "scale_maps", "score")
TOLERANCE = 1e-4  # max |ONNX Runtime - PyTorch| on the maps, in raw score units (maps reach ~0.1 .. 3)


class ExportedForward(nn.Module):
    """The model with the inference switches fixed and plain tensor outputs."""

    def __init__(self, model: ExpertTeacherStudent, reference: str | None = None, gate: str = "gated"):
        super().__init__()
        self.model, self.reference, self.gate = model, reference, gate

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.model(image, reference=self.reference, gate=self.gate).maps
        return maps.fused, torch.cat(maps.scales, dim=1), maps.score


def export_onnx(
    model: ExpertTeacherStudent,
    path: str | Path,
    config: dict | None = None,
    reference: str | None = None,
    gate: str = "gated",
    opset: int = OPSET,
) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically); ``config`` goes into the metadata."""
    import onnx

    model = model.to("cpu").eval()
    wrapper = ExportedForward(model, reference, gate).eval()
    size = model.config.image_size
    example = torch.rand(2, 3, size, size)
    dynamic = {"image": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}}

    def write(tmp: str) -> None:
        with warnings.catch_warnings():  # the exporter's deprecation notice and constant-folding chatter
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            torch.onnx.export(
                wrapper, (example,), tmp, dynamo=False, input_names=["image"], output_names=list(OUTPUTS),
                dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True,
            )
        proto = onnx.load(tmp)
        metadata = {"reference": reference or model.config.default_reference, "gate": gate, "image_size": str(size)}
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


def compare_with_onnxruntime(
    model: ExpertTeacherStudent, path: str | Path, images: torch.Tensor, reference: str | None = None, gate: str = "gated"
) -> dict[str, float]:
    """Max absolute difference between ONNX Runtime and PyTorch (float32, CPU) for each output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(list(OUTPUTS), {"image": images.numpy().astype(np.float32)})
    with torch.no_grad():
        torch_outputs = ExportedForward(model.to("cpu").eval(), reference, gate)(images)
    return {
        name: float(np.abs(a - b.numpy()).max()) for name, a, b in zip(OUTPUTS, onnx_outputs, torch_outputs)
    }
