"""Wall-clock of training several categories: one process vs ``torchrun --nproc_per_node N``, side by side.

    python bench/multi_category.py                       # 2 categories, quick preset, 1 vs 2 processes
    python bench/multi_category.py --iterations 50 --device cuda --categories 4   # on a GPU machine

The categories are copies (symlinks) of MPDD metal_plate under different names, so every
category costs the same and the ratio shows the parallel speed-up alone. Each launch trains
every category from scratch (``rdexpert train --category all --no-test``) into its own folder;
the wall time runs from the launch to the exit of the command (model building, data loading,
training, health check, calibration, out-of-distribution fit, saving). The two launches
alternate ``--repeats`` times. Results: bench/results/multi_category.{md,json}, with the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"


def make_categories(root: Path, count: int) -> Path:
    source = DATA / "mpdd" / "metal_plate"
    if not source.is_dir():
        sys.exit(f"MPDD metal_plate not found at {source}")
    for i in range(count):
        root.mkdir(parents=True, exist_ok=True)
        (root / f"plate_{i}").symlink_to(source, target_is_directory=True)
    return root


def launch(processes: int, data: Path, out: Path, args) -> float:
    command = ["-m", "rdexpert.cli", "train", "--data-root", str(data), "--category", "all", "--no-test",
               "--preset", args.preset, "--iterations", str(args.iterations), "--device", args.device,
               "--textures", str(DATA / "dtd" / "images"), "--out", str(out)]
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    done = subprocess.run(launcher + command, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode:
        sys.exit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="torchrun --nproc_per_node")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="multi_category", help="results name under bench/results/")
    args = parser.parse_args()

    times: dict[int, list[float]] = {1: [], args.processes: []}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_categories(Path(tmp) / "data", args.categories)
        for _ in range(args.repeats):
            for processes in times:
                seconds = launch(processes, data, Path(tmp) / f"run{processes}", args)
                times[processes].append(seconds)
                print(f"{processes} process(es): {seconds:.1f} s", flush=True)
    one, many = statistics.median(times[1]), statistics.median(times[args.processes])
    command = "python bench/multi_category.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        f"# {args.categories} categories: 1 process vs torchrun --nproc_per_node {args.processes}", "",
        f"Machine: {machine_line()}; load average before the run {os.getloadavg()[0]:.2f}.",
        f"Command: `{command.strip()}`. Preset `{args.preset}`, {args.iterations} iterations per category, "
        f"device {args.device}; categories are symlinked copies of MPDD metal_plate; median of {args.repeats} "
        "launch(es) each, alternating.", "",
        "| launch | wall seconds | speed-up |", "|---|---|---|",
        f"| 1 process, categories in turn | {one:.1f} | 1.00x |",
        f"| torchrun --nproc_per_node {args.processes} | {many:.1f} | {one / many:.2f}x |", "",
    ])
    save_results(args.out, text, seconds={str(k): v for k, v in times.items()}, settings=vars(args))


if __name__ == "__main__":
    main()
