"""The two ONNX exporters of ``rdexpert export`` side by side: export time, file, graph size, ONNX Runtime latency.

    python bench/onnx_exporters.py                                   # checkpoints/metal_plate_full_128px
    python bench/onnx_exporters.py --checkpoint checkpoints/metal_plate --reps 10

The dynamo exporter (``torch.onnx.export(dynamo=True)``, the default) and the TorchScript one (its fallback)
export the same checkpoint; ONNX Runtime (CPU, one thread) then scores the same random batch with each file,
repetitions round-robin so that load on a shared machine hits both alike. Results:
bench/results/onnx_exporters.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402

from rdexpert.checkpoint.folder import load_checkpoint  # noqa: E402
from rdexpert.inference.export import OUTPUTS, compare_with_onnxruntime, export_onnx, onnx_metadata  # noqa: E402

EXPORTERS = ("dynamo", "torchscript")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/metal_plate_full_128px")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import onnx
    import onnxruntime

    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    model, config = load_checkpoint(args.checkpoint)
    size = model.config.image_size
    rows, folder = {}, Path(tempfile.mkdtemp(prefix="onnx_exporters_"))
    sessions = {}
    for exporter in EXPORTERS:
        start = time.perf_counter()
        path = export_onnx(model, folder / f"{exporter}.onnx", config, exporter=exporter)
        seconds = time.perf_counter() - start
        images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        sessions[exporter] = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rows[exporter] = {
            "export_s": round(seconds, 1), "mib": round(path.stat().st_size / 2**20, 2),
            "nodes": len(onnx.load(str(path)).graph.node), "opset": int(onnx_metadata(path)["opset"]),
            "max_diff": max(compare_with_onnxruntime(model, path, images).values()), "ms_per_image": {},
        }
    for batch in args.batches:
        feed = {"image": np.random.default_rng(batch).random((batch, 3, size, size), dtype=np.float32)}
        times = {exporter: [] for exporter in EXPORTERS}
        for session in sessions.values():
            session.run(list(OUTPUTS), feed)  # warm-up
        for _ in range(args.reps):
            for exporter, session in sessions.items():
                start = time.perf_counter()
                session.run(list(OUTPUTS), feed)
                times[exporter].append((time.perf_counter() - start) * 1000 / batch)
        for exporter in EXPORTERS:
            rows[exporter]["ms_per_image"][batch] = round(statistics.median(times[exporter]), 1)

    lines = [
        f"# ONNX exporters: {Path(args.checkpoint).name} ({size} px)", "",
        f"Machine: {machine_line()}; ONNX Runtime {onnxruntime.__version__}, CPU, 1 thread; load average before "
        f"the run {load:.2f} (other work shares these cores).",
        f"Command: `python bench/onnx_exporters.py --checkpoint {args.checkpoint} --reps {args.reps}`. "
        "Median ms per image over the repetitions after one warm-up, round-robin over the two files; max diff: "
        "max |ONNX Runtime - PyTorch| over the three outputs on 2 random images.", "",
        "| exporter | export s | MiB | nodes | opset | max diff | "
        + " | ".join(f"batch {b}: ms/image" for b in args.batches) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(args.batches),
    ]
    for exporter, r in rows.items():
        lines.append(f"| {exporter} | {r['export_s']} | {r['mib']} | {r['nodes']} | {r['opset']} | "
                     f"{r['max_diff']:.1e} | " + " | ".join(str(r["ms_per_image"][b]) for b in args.batches) + " |")
    save_results("onnx_exporters", "\n".join(lines) + "\n", checkpoint=args.checkpoint, rows=rows, reps=args.reps,
                 load_average=load)


if __name__ == "__main__":
    main()
