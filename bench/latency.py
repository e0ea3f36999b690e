"""Milliseconds per image for the full forward (features, student, anomaly maps, score), with a peer.

    python bench/latency.py                 # 256 px, batch 1 and 16, Lite0 and wide_resnet50_2
    python bench/latency.py --reps 15       # more repetitions
    python bench/latency.py --device cuda --precision bf16 --batches 1 64 --out bench/results/latency_cuda_bf16

Random weights (timing does not depend on them). Each of our rows is the model as the Predictor runs it
(``prepare_for_inference``: BatchNorm folded, channels-last) beside its "before" row, the code path before
that change (the model as built, and the anomaly-map blur as one 2-D convolution), measured in the same run.
The peer is anomalib's ReverseDistillation torch model (plain RD) with the same backbone, measured in
the same run; anomalib only has decoders for ResNet-family backbones, so Lite0
has no peer. When anomalib is not installed the peer rows are skipped with a
note (it is a benchmark-only dependency: `pip install anomalib`, keeping the venv's torch and torchvision).
Results: bench/results/latency.{md,json}, with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_info, machine_line  # noqa: E402

from rdexpert.checkpoint.io import write_json  # noqa: E402
from rdexpert.model import ExpertTeacherStudent, ModelConfig, anomaly_map  # noqa: E402

PEER = "anomalib ReverseDistillation"
BEFORE = " (before)"  # suffix of the rows measuring the code path before prepare_for_inference and the matrix blur
ORT = " (onnxruntime)"  # suffix of the rows run by the Predictor's ONNX Runtime backend (CPU)


def blur_2d(maps: torch.Tensor, sigma: float, border: str = "mirror") -> torch.Tensor:
    """The anomaly-map blur before the matrix form: one 2-D convolution with the full (33 x 33) kernel."""
    kernel1d = anomaly_map.gaussian_kernel1d(sigma, maps.dtype, maps.device)
    size = kernel1d.numel()
    height, width = maps.shape[-2:]
    flat = maps.reshape(-1, 1, height, width)
    padded = anomaly_map._pad_symmetric(flat, size // 2) if border == "reflect" \
        else F.pad(flat, [size // 2] * 4, mode="reflect")
    return F.conv2d(padded, (kernel1d.unsqueeze(-1) * kernel1d).view(1, 1, size, size)).reshape(maps.shape)


def before_blur():
    """Inside this context the model's anomaly maps are blurred the way they were before (:func:`blur_2d`)."""
    return mock.patch.object(anomaly_map, "gaussian_blur", blur_2d)


def build(backbone: str, variant: str, size: int, optimised: bool = True) -> ExpertTeacherStudent:
    """A random-weight model as the Predictor runs it, or (``optimised=False``) as built, the path before."""
    model = ExpertTeacherStudent(ModelConfig(backbone=backbone, variant=variant, image_size=size), pretrained=False)
    return model.eval().prepare_for_inference() if optimised else model.eval()


def ours(backbone: str, variant: str, size: int, optimised: bool = True):
    model = build(backbone, variant, size, optimised)
    if optimised:
        return model, lambda images: model(images).maps.score

    def before(images):
        with before_blur():
            return model(images).maps.score

    return model, before


def ours_onnxruntime(backbone: str, variant: str, size: int, device: torch.device, notes: list[str]):
    """The same model in the Predictor's ONNX Runtime backend (exported afresh into a temporary cache)."""
    if device.type != "cpu":
        return None, "the onnxruntime backend runs on the CPU only"
    try:
        from rdexpert.inference.onnx_backend import OnnxRuntimeForward
    except ImportError as error:
        return None, f"onnxruntime is not installed ({error})"
    model = build(backbone, variant, size, optimised=False)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        forward = OnnxRuntimeForward(model, cache=cache)  # the session holds the graph; the file can go
    notes.append(f"rdexpert {variant}{ORT} / {backbone}: export and session start {time.perf_counter() - began:.1f} s "
                 "(once per checkpoint; cached on disk afterwards)")
    return (model, lambda images: forward(images).scores), None


def anomalib_rd(backbone: str, size: int):
    """anomalib's RD torch model, or the reason it cannot be built."""
    try:
        from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode
        from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
    except ImportError as error:
        return None, f"anomalib is not installed ({error}); `pip install anomalib` to measure it"
    try:
        model = ReverseDistillationModel(backbone=backbone, input_size=(size, size),
                                         layers=["layer1", "layer2", "layer3"],
                                         anomaly_map_mode=AnomalyMapGenerationMode.ADD, pre_trained=False)
    except Exception as error:  # anomalib has no decoder for non-ResNet backbones
        return None, f"anomalib cannot build RD with {backbone} ({type(error).__name__}: {error})"
    model.eval()
    return (model, lambda images: model(images).pred_score), None


def package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def anomalib_rd_onnxruntime(backbone: str, size: int, device: torch.device):
    """The peer in ONNX Runtime too (TorchScript exporter, same session options): the like-for-like ratio."""
    built, why_not = anomalib_rd(backbone, size)
    if built is None or device.type != "cpu":
        return None, why_not or "ONNX Runtime rows run on the CPU only"
    import onnxruntime

    class Score(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, images):
            return self.model(images).pred_score

    with tempfile.TemporaryDirectory() as folder, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = f"{folder}/peer.onnx"
        torch.onnx.export(Score(built[0]).eval(), (torch.rand(1, 3, size, size),), path, dynamo=False,
                          input_names=["image"], output_names=["score"], dynamic_axes={"image": {0: "batch"}},
                          opset_version=18)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return (built[0], lambda images: session.run(None, {"image": images.cpu().numpy()})), None


def anomalib_version() -> str | None:
    return package_version("anomalib")


def onnxruntime_version() -> str | None:
    return package_version("onnxruntime")


def interleaved_milliseconds(runs: dict, batch: int, size: int, reps: int, device: torch.device = torch.device("cpu"),
                             precision: str = "fp32") -> dict:
    """Median ms per image of each run; repetitions go round-robin over the runs, after one warm-up call each,
    so a load change on a shared machine hits every model alike and the ratios stay fair. On CUDA every call is
    synchronised, and ``precision="bf16"`` runs it under bf16 autocast."""
    from rdexpert.runtime import autocast

    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {key: [] for key in runs}
    with torch.inference_mode(), autocast(device, precision):
        for run in runs.values():
            run(images)
        sync()
        for _ in range(reps):
            for key, run in runs.items():
                began = time.perf_counter()
                run(images)
                sync()
                times[key].append(time.perf_counter() - began)
    return {key: 1000 * statistics.median(t) / batch for key, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per cell")
    parser.add_argument("--reps-large", type=int, default=2, help="repetitions for wide_resnet50_2 at batch > 1")
    parser.add_argument("--out", default=str(HERE / "results" / "latency"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast (CUDA only)")
    parser.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0", "wide_resnet50_2"])
    args = parser.parse_args()
    size = args.image_size
    device = torch.device(args.device)
    load_before = os.getloadavg()

    rows, notes = [], []
    cases = [  # (backbone, label, builder); ours first, then the peer with the same backbone
        (backbone, f"rdexpert {variant}{suffix}", builder)
        for backbone, variants in (("tf_efficientnet_lite0", ["full"]), ("wide_resnet50_2", ["full", "rd"]))
        for variant in variants
        for suffix, builder in (
            (BEFORE, lambda b, v=variant: (ours(b, v, size, False), None)),
            ("", lambda b, v=variant: (ours(b, v, size), None)),
            (ORT, lambda b, v=variant: ours_onnxruntime(b, v, size, device, notes)),
        )
    ] + [(backbone, label, builder) for backbone in ("tf_efficientnet_lite0", "wide_resnet50_2") for label, builder in (
        (PEER, lambda b: anomalib_rd(b, size)), (PEER + ORT, lambda b: anomalib_rd_onnxruntime(b, size, device)))]
    for backbone in dict.fromkeys(case[0] for case in cases if case[0] in args.backbones):
        runs = {}
        for _, label, build in (case for case in cases if case[0] == backbone):
            built, why_not = build(backbone)
            if built is None:
                notes.append(f"{label} / {backbone}: skipped: {why_not}")
                print(notes[-1], flush=True)
            else:
                built[0].to(device)
                runs[label] = built[1]
        group = {label: {"backbone": backbone, "model": label} for label in runs}
        for batch in args.batches:
            reps = args.reps_large if backbone == "wide_resnet50_2" and batch > 1 else args.reps
            for label, ms in interleaved_milliseconds(runs, batch, size, reps, device, args.precision).items():
                group[label][f"batch_{batch}_ms"] = ms
                group[label][f"batch_{batch}_reps"] = reps
        for row in group.values():
            print(row, flush=True)
        rows += group.values()
        del runs

    def find(backbone, model):
        return next((r for r in rows if r["backbone"] == backbone and r["model"] == model), None)

    for row in rows:  # ratio to the peer with the same backbone (> 1: ours is slower), and after / before
        peer = find(row["backbone"], PEER)
        before = None if row["model"].endswith(BEFORE) else find(row["backbone"], row["model"].removesuffix(ORT) + BEFORE)
        for batch in args.batches:
            key = f"batch_{batch}_ms"
            row[f"batch_{batch}_ratio"] = row[key] / peer[key] if peer and row is not peer else None
            row[f"batch_{batch}_vs_before"] = row[key] / before[key] if before else None

    for row in rows:  # like for like: our ONNX Runtime rows against the peer's
        peer_ort = find(row["backbone"], PEER + ORT)
        if row["model"].endswith(ORT) and peer_ort and row is not peer_ort:
            ratios = ", ".join(f"{row[f'batch_{b}_ms'] / peer_ort[f'batch_{b}_ms']:.2f}x at batch {b}" for b in args.batches)
            notes.append(f"{row['model']} / {PEER + ORT} ({row['backbone']}): {ratios}")

    def cell(row, batch):
        ratio, vs_before = row[f"batch_{batch}_ratio"], row[f"batch_{batch}_vs_before"]
        notes = ([f"{ratio:.2f}x peer"] if ratio is not None else []) + \
            ([f"{vs_before:.2f}x before"] if vs_before is not None else [])
        return f"{row[f'batch_{batch}_ms']:.1f}" + (f" ({', '.join(notes)})" if notes else "")

    header = " | ".join(f"batch {b}: ms/image (x peer, x before)" for b in args.batches)
    lines = [
        f"# Inference latency, {size} px, full forward (features, student, maps, score)",
        "",
        f"Machine: {machine_line()}; device {args.device}, {args.precision}; {torch.get_num_threads()} torch threads; "
        f"load average before the run {load_before[0]:.2f} (other work shares these cores).",
        f"Command: `{' '.join(['python bench/latency.py', *sys.argv[1:]])}`. Random weights; median of the "
        "timed repetitions after one warm-up, round-robin over the models of a backbone (reps per cell in "
        "latency.json); `before`: the code path before `prepare_for_inference` and the matrix blur, "
        "`x before` = after / before; `(onnxruntime)`: the same model in the Predictor's ONNX Runtime backend "
        f"(`backend=\"onnxruntime\"`, onnxruntime {onnxruntime_version() or 'not installed'}, "
        f"{torch.get_num_threads()} intra-op threads; the peer's row exported the same way, for the like-for-like "
        "ratio); `x peer` = ours / "
        f"{PEER} (anomalib {anomalib_version() or 'not installed'}) with the same backbone (anomalib has RD "
        "decoders for ResNets only).",
        "",
        f"| backbone | model | {header} |",
        "|---|---|" + "---|" * len(args.batches),
    ]
    lines += [f"| {r['backbone']} | {r['model']} | " + " | ".join(cell(r, b) for b in args.batches) + " |" for r in rows]
    lines += [""] + [f"- {note}" for note in notes]
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    write_json(out.with_suffix(".json"), {"image_size": size, "machine": machine_info(), "anomalib": anomalib_version(),
                                          "load_average_before": load_before, "rows": rows, "notes": notes})


if __name__ == "__main__":
    main()
