"""Fine-tune time to quality: wall time of `rdexpert train` from start to a saved, calibrated
checkpoint, and the test metrics of that checkpoint, per setting, iteration budget and seed; a table
and metric-vs-minutes curves (PNG).

    python bench/finetune_speed.py                                   # quick at 50/100/200 iterations, seeds 111-113
    python bench/finetune_speed.py --presets quick cpu --iterations 200 800
    python bench/finetune_speed.py --warm-from runs/dtd_source --warm-iterations 50 100   # + warm-started quick

A setting is a preset, or "quick + warm start" (`--init-from` a checkpoint of ANOTHER product, so the
test category is never seen before its own fine-tune). Each run is the real command line in a
subprocess (start-up, data loading, calibration and the out-of-distribution fit are in the wall
time), one run at a time on the whole machine. Results accumulate in
bench/results/finetune_speed.{md,json,png} (a run already measured in this machine's results is
reused; `--fresh` measures everything again).
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def run(preset: str, iterations: int, seed: int, args, warm_from: str | None = None) -> dict:
    setting = f"{preset} + warm start" if warm_from else preset
    name = f"{args.category}_{preset}{'_warm' if warm_from else ''}_{iterations}it_s{seed}"
    out = HERE / "runs" / "finetune_speed" / name
    shutil.rmtree(out, ignore_errors=True)  # a resumed run would not time the whole fine-tune
    command = [sys.executable, "-m", "rdexpert.cli", "train", "--data-root", args.data_root, "--category", args.category,
               "--preset", preset, "--iterations", str(iterations), "--textures", args.textures, "--seed", str(seed),
               "--out", str(out)] + (["--init-from", warm_from] if warm_from else [])
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - began
    subprocess.run([sys.executable, "-m", "rdexpert.cli", "test", "--checkpoint", str(out), "--data-root", args.data_root,
                    "--category", args.category, "--out", str(out / "test")], check=True, capture_output=True, text=True)
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    return {"setting": setting, "preset": preset, "iterations": iterations, "seed": seed, "warm_from": warm_from,
            "wall_seconds": round(wall, 1), **{k: metrics[k] for k, _ in METRICS}}


def groups(results: list[dict]) -> dict[tuple[str, int], list[dict]]:
    found: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        found.setdefault((r["setting"], r["iterations"]), []).append(r)
    return dict(sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1])))


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4))
    settings = list(dict.fromkeys(r["setting"] for r in results))
    for ax, (key, name) in zip(axes, METRICS):
        for setting in settings:
            points = [(statistics.fmean(r["wall_seconds"] / 60 for r in runs),
                       [100 * r[key] for r in runs], its) for (s, its), runs in groups(results).items() if s == setting]
            xs = [x for x, _, _ in points]
            ys = [statistics.fmean(v) for _, v, _ in points]
            errs = [statistics.stdev(v) if len(v) > 1 else 0 for _, v, _ in points]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=setting)
            for x, y, (_, _, its) in zip(xs, ys, points):
                ax.annotate(f"{its}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.axvline(5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("wall minutes to a calibrated checkpoint")
        ax.set_ylabel(f"{name} (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Fine-tune time to quality on metal_plate (mean ± std over seeds; labels: iterations); "
                 "dashed: the 5-minute target", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(SHARED / "mpdd"))
    parser.add_argument("--category", default="metal_plate")
    parser.add_argument("--textures", default=str(SHARED / "dtd" / "images"))
    parser.add_argument("--presets", nargs="+", default=["quick"])
    parser.add_argument("--iterations", nargs="+", type=int, default=[50, 100, 200],
                        help="iteration budgets (curve points) for every preset")
    parser.add_argument("--warm-from", default=None, help="checkpoint of another product for warm-started quick runs")
    parser.add_argument("--warm-iterations", nargs="+", type=int, default=[50, 100])
    parser.add_argument("--seeds", nargs="+", type=int, default=[111, 112, 113])
    parser.add_argument("--fresh", action="store_true", help="measure again what the stored results already hold")
    args = parser.parse_args()

    stored = HERE / "results" / "finetune_speed.json"
    results = [] if args.fresh or not stored.is_file() else [
        r for r in json.loads(stored.read_text()).get("results", []) if "setting" in r]
    planned = [(p, its, None) for p in args.presets for its in args.iterations]
    if args.warm_from:
        planned += [("quick", its, args.warm_from) for its in args.warm_iterations]
    for preset, iterations, warm in planned:
        for seed in args.seeds:
            setting = f"{preset} + warm start" if warm else preset
            if any((r["setting"], r["iterations"], r["seed"]) == (setting, iterations, seed) for r in results):
                continue
            results.append(run(preset, iterations, seed, args, warm))
            print(json.dumps(results[-1]), flush=True)
            save_results("finetune_speed", table(results, args), args=vars(args), results=results)
    save_results("finetune_speed", table(results, args), args=vars(args), results=results)
    plot(results, HERE / "results" / "finetune_speed.png")


def table(results: list[dict], args) -> str:
    warm = sorted({r["warm_from"] for r in results if r.get("warm_from")})
    lines = [
        f"# Fine-tune time to quality ({args.category}, DTD textures)", "",
        f"Machine: {machine_line()}; one run at a time.",
        "Command: `python bench/finetune_speed.py` (see its docstring for the settings measured; results accumulate).", "",
        "Wall time: `rdexpert train` in a subprocess, from start to the saved checkpoint (training, health check, "
        "calibration with synthetic anomalies, out-of-distribution fit). Metrics: `rdexpert test` on the test split; "
        "mean ± std over seeds, in percent."
        + (f" Warm start from: {', '.join(warm)} (trained on another product)." if warm else ""), "",
        "| setting | iterations | seeds | wall minutes | " + " | ".join(name for _, name in METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for (setting, iterations), runs in groups(results).items():
        minutes = [r["wall_seconds"] / 60 for r in runs]
        spread = statistics.stdev(minutes) if len(minutes) > 1 else 0.0
        lines.append(f"| {setting} | {iterations} | {len(runs)} | {statistics.fmean(minutes):.1f} ± {spread:.1f} | "
                     + " | ".join(cell([r[k] for r in runs]) for k, _ in METRICS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
