"""Train every ablation variant with several seeds and one budget, test each, print and store one table.

    python bench/ablation.py                                   # 5 variants x seeds 111-113, 128 px, 200 iterations
    python bench/ablation.py --image-size 256 --iterations 800 # the full `cpu` preset (hours on 2 cores)

Results go to bench/results/ablation_<dataset>_<category>.{md,json}, with the machine; mean ± std over
seeds. Models are the final iterate: no selection on the test split. Runs are cached in bench/runs/seeded/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402
from seeded_runs import METRICS, SHARED, cell, run_all  # noqa: E402

from rdexpert.model import VARIANTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(SHARED / "mpdd"))
    parser.add_argument("--category", default="metal_plate")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--recipe", default="improved")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--textures", default=str(SHARED / "dtd" / "images"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[111, 112, 113])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    jobs, keys = [], []
    for seed in args.seeds:
        for variant in args.variants:
            config = dict(data_root=args.data_root, category=args.category, variant=variant, preset="cpu",
                          iterations=args.iterations, image_size=args.image_size, textures=args.textures,
                          seed=seed, recipe=args.recipe)
            jobs.append((config, None))
            keys.append((variant, seed))
    rows: dict[str, list[dict]] = {}
    for (variant, seed), result in zip(keys, run_all(jobs, args.jobs)):
        rows.setdefault(variant, []).append({**result["default"], "train_seconds": result["train_seconds"]})
        print(variant, seed, json.dumps(result["default"]), flush=True)

    lines = [
        f"# Ablation on {Path(args.data_root).name}/{args.category}",
        "",
        f"Budget: preset cpu (tf_efficientnet_lite0), {args.image_size} px, batch 4, {args.iterations} iterations, "
        f"recipe `{args.recipe}`, DTD textures, seeds {', '.join(map(str, args.seeds))}; mean ± std over seeds, in "
        "percent. Final models, no test-set selection.",
        f"Machine: {machine_line()} (runs two at a time, one thread each).",
        f"Command: `python bench/ablation.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "| variant | " + " | ".join(name for _, name in METRICS) + " | train minutes (1 thread) |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    for variant, runs in rows.items():
        cells = [cell([r[key] for r in runs]) for key, _ in METRICS]
        minutes = statistics.fmean(r["train_seconds"] for r in runs) / 60
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    save_results(f"ablation_{Path(args.data_root).name}_{args.category}", "\n".join(lines) + "\n",
                 args=vars(args), rows=rows)


if __name__ == "__main__":
    main()
