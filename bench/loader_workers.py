"""DataLoader workers on a CPU machine: seconds per training iteration with 0, 1 and 2 workers,
measured side by side on real data.

    python bench/loader_workers.py --iterations 30

Writes bench/results/loader_workers.{md,json} with the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_info, machine_line  # noqa: E402

from rdexpert.training.loop import TrainConfig, Trainer  # noqa: E402


def seconds_per_iteration(workers: int, args) -> float:
    times = []

    def tick(iteration, losses):
        times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(data_root=args.data_root, category=args.category, out=out, variant=args.variant,
                             iterations=args.iterations, num_workers=workers, textures=args.textures,
                             save_every=10**6, save_seconds=1e9, health_every=0)
        Trainer(config, progress=False, callback=tick).fit()
    steady = times[args.warmup:]  # after the loader has started
    return (steady[-1] - steady[0]) / (len(steady) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data" / "mpdd"))
    parser.add_argument("--category", default="metal_plate")
    parser.add_argument("--textures", default=str(HERE.parent.parent / "shared" / "data" / "dtd" / "images"))
    parser.add_argument("--variant", default="full")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = {w: seconds_per_iteration(w, args) for w in args.workers}
    base = rows[args.workers[0]]
    lines = [f"# DataLoader workers, `{args.variant}`, cpu preset, {args.category}", "",
             f"Machine: {machine_line()}.", f"Command: `python bench/loader_workers.py {' '.join(sys.argv[1:])}`".rstrip(),
             "", "| workers | s/iteration | ratio to 0 workers |", "|---|---|---|"]
    lines += [f"| {w} | {s:.3f} | {s / base:.2f} |" for w, s in rows.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results" / "loader_workers.md").write_text(text)
    (HERE / "results" / "loader_workers.json").write_text(json.dumps(
        {"machine": machine_info(), "args": vars(args), "seconds_per_iteration": rows}, indent=1))


if __name__ == "__main__":
    main()
