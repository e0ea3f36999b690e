"""Fine-tune time to quality (issue 11): wall time of `rdexpert train` from start to a saved, calibrated
checkpoint, and the test metrics of that checkpoint, per preset and seed; a table and a PNG.

    python bench/finetune_speed.py                       # preset quick, seeds 111-113, metal_plate + DTD
    python bench/finetune_speed.py --presets quick cpu   # the cpu preset too (about 25 min per seed here)

Each run is the real command line in a subprocess (so start-up, data loading, calibration and the
out-of-distribution fit are in the wall time), one run at a time on the whole machine. Results:
bench/results/finetune_speed.{md,json,png}, with the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402
from seeded_runs import SHARED, cell  # noqa: E402

METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO@0.3"))


def run(preset: str, seed: int, args) -> dict:
    out = HERE / "runs" / "finetune_speed" / f"{args.category}_{preset}_s{seed}"
    if (out / "config.json").is_file():
        raise SystemExit(f"{out} exists: delete it to measure again (a resumed run would not time the whole fine-tune)")
    command = [sys.executable, "-m", "rdexpert.cli", "train", "--data-root", args.data_root, "--category", args.category,
               "--preset", preset, "--textures", args.textures, "--seed", str(seed), "--out", str(out)]
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - began
    subprocess.run([sys.executable, "-m", "rdexpert.cli", "test", "--checkpoint", str(out), "--data-root", args.data_root,
                    "--category", args.category, "--out", str(out / "test")], check=True, capture_output=True, text=True)
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    return {"preset": preset, "seed": seed, "wall_seconds": round(wall, 1), **{k: metrics[k] for k, _ in METRICS}}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    for ax, (key, name) in zip(axes, METRICS):
        for preset in dict.fromkeys(r["preset"] for r in results):
            runs = [r for r in results if r["preset"] == preset]
            ax.scatter([r["wall_seconds"] / 60 for r in runs], [100 * r[key] for r in runs], label=preset)
        ax.axvline(5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("wall minutes to a calibrated checkpoint")
        ax.set_ylabel(f"{name} (%)")
    axes[0].legend()
    fig.suptitle("Fine-tune time to quality (each dot: one seed); dashed: the 5-minute target", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(SHARED / "mpdd"))
    parser.add_argument("--category", default="metal_plate")
    parser.add_argument("--textures", default=str(SHARED / "dtd" / "images"))
    parser.add_argument("--presets", nargs="+", default=["quick"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[111, 112, 113])
    args = parser.parse_args()

    results = []
    for preset in args.presets:
        for seed in args.seeds:
            results.append(run(preset, seed, args))
            print(json.dumps(results[-1]), flush=True)
    lines = [
        f"# Fine-tune time to quality ({args.category}, DTD textures)", "",
        f"Machine: {machine_line()}; one run at a time.",
        f"Command: `python bench/finetune_speed.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        "Wall time: `rdexpert train` in a subprocess, from start to the saved checkpoint (training, health check, "
        "calibration with synthetic anomalies, out-of-distribution fit). Metrics: `rdexpert test` on the test split; "
        "mean ± std over seeds, in percent.", "",
        "| preset | seeds | wall minutes | " + " | ".join(name for _, name in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for preset in args.presets:
        runs = [r for r in results if r["preset"] == preset]
        minutes = [r["wall_seconds"] / 60 for r in runs]
        spread = statistics.stdev(minutes) if len(minutes) > 1 else 0.0
        lines.append(f"| {preset} | {len(runs)} | {statistics.fmean(minutes):.1f} ± {spread:.1f} | "
                     + " | ".join(cell([r[k] for r in runs]) for k, _ in METRICS) + " |")
    save_results("finetune_speed", "\n".join(lines) + "\n", args=vars(args), results=results)
    plot(results, HERE / "results" / "finetune_speed.png")


if __name__ == "__main__":
    main()
