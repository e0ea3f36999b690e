"""ONNX Runtime as the Predictor's optional CPU backend: the same forward, in less time.

ONNX Runtime's CPU convolutions (its blocked NCHWc kernels) run this model's forward faster than
PyTorch's oneDNN path, most at batch 1, where the 16 x 16 and 32 x 32 convolutions of the decoder and
GII leave oneDNN's threads short of work (``python bench/latency.py``, results in bench/results/latency.md).
The maps agree with PyTorch's within float rounding (:data:`rdexpert.inference.export.TOLERANCE`; tests/test_onnx_backend.py).

The graph is exported once per model (:func:`rdexpert.inference.export.export_onnx`, fast TorchScript exporter
first) and cached in :func:`cache_dir` under a hash of the weights and settings, so a second load of the
same checkpoint starts at once. Only the default switches run here (the model's default reference,
gate "gated"); the Predictor sends every other request to PyTorch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rdexpert.extras import optional_module
from rdexpert.inference.export import OPSET, export_onnx, output_names
from rdexpert.model import ExpertTeacherStudent

BACKENDS = ("torch", "onnxruntime")
GRAPH_VERSION = 1  # bump when the exported graph changes for the same weights (the cache key includes it)


def cache_dir() -> Path:
    """``$RDEXPERT_CACHE/onnx``, else ``$XDG_CACHE_HOME/rdexpert/onnx``, else ``~/.cache/rdexpert/onnx``."""
    root = os.environ.get("RDEXPERT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rdexpert"
    return Path(root) / "onnx"


def model_key(model: ExpertTeacherStudent, pooled_expert: bool) -> str:
    """A hash of everything the exported graph depends on: weights, model config, outputs, torch and format."""
    digest = hashlib.sha256()
    settings = {"config": dataclasses.asdict(model.config), "pooled_expert": pooled_expert, "torch": torch.__version__,
                "opset": OPSET, "format": GRAPH_VERSION}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def _export(model: ExpertTeacherStudent, path: Path, pooled_expert: bool) -> None:
    """TorchScript exporter first (about 1 s for Lite0, against about 25 s for dynamo), dynamo if it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's notice that the TorchScript exporter is deprecated
        try:
            export_onnx(model, path, exporter="torchscript", pooled_expert=pooled_expert)
        except Exception:  # a torch without the old exporter, or a graph it cannot trace
            export_onnx(model, path, exporter="dynamo", pooled_expert=pooled_expert)


@dataclass
class OnnxOutputs:
    fused: np.ndarray  # B x S x S
    scales: np.ndarray  # B x 3 x S x S
    scores: np.ndarray  # B
    pooled_expert: torch.Tensor | None  # B x D, for the out-of-distribution check


class OnnxRuntimeForward:
    """The model's default forward in an ONNX Runtime CPU session (build it before ``prepare_for_inference``).

    ``pooled_expert``: the graph also returns the expert's pooled features (the out-of-distribution check's
    input), so the check costs no PyTorch forward. ``threads``: ONNX Runtime's intra-op threads (default:
    torch's). ``cache``: the folder of exported graphs (default :func:`cache_dir`).
    """

    def __init__(self, model: ExpertTeacherStudent, pooled_expert: bool = False, threads: int | None = None,
                 cache: str | Path | None = None):
        onnxruntime = optional_module("onnxruntime")
        if model.inference_only:
            raise ValueError("export the model before prepare_for_inference (its CPU batch chunking is not traceable)")
        self.pooled_expert = pooled_expert
        self.path = Path(cache or cache_dir()) / f"{model_key(model, pooled_expert)}.onnx"
        if not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _export(model, self.path, pooled_expert)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.outputs = output_names(pooled_expert)

    def __call__(self, images: torch.Tensor) -> OnnxOutputs:
        """``images``: B x 3 x S x S float in [0, 1], fitted like the checkpoint's input."""
        results = self.session.run(self.outputs, {"image": images.detach().cpu().float().numpy()})
        fused, scales, scores = results[:3]
        pooled = torch.from_numpy(results[3]) if self.pooled_expert else None
        return OnnxOutputs(fused[:, 0], scales, scores, pooled)
