"""Recipe bench: the released code's recipe (`reference`), `improved`, and the reference with
each single deviation of `improved` switched on, on one category, several seeds, mean ± std.

    python bench/recipe.py                                   # metal_plate, DTD textures, seeds 111-113
    python bench/recipe.py --seeds 111 --iterations 50       # a quick look

Scoring-only rows (1: map upsampling, 2: blur border) need no retraining: the reference models are
tested again with the choice switched. Rows that cannot differ on this machine or category are listed
as such (10: metal_plate is outside the released foreground table, so both recipes use rdexpert's;
11: no WideResNet-50 weights offline; 12: bf16 autocast only on CUDA). Final models, no test-set
selection. Results: bench/results/recipe_<category>.{md,json}; runs cached in bench/runs/seeded/.
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

from rdexpert.training.recipe import CHOICES, IMPROVED, RELEASED  # noqa: E402

ROWS = list(CHOICES)  # issue 8's rows 1-12 in order
SCORING_ONLY = {"map_align_corners", "blur_border"}
NOT_MEASURABLE = {
    "foreground_table": "metal_plate is not in the released (MVTec AD) table: both recipes use rdexpert's",
    "wrn_weights": "no WideResNet-50 ImageNet weights offline; Lite0 is the backbone here",
    "precision": "bf16 autocast is CUDA-only; this machine has no GPU",
}
# the deviation each row switches on, whatever `improved` currently holds
DEVIATION = {name: values[1] for name, values in CHOICES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(SHARED / "mpdd"))
    parser.add_argument("--category", default="metal_plate")
    parser.add_argument("--textures", default=str(SHARED / "dtd" / "images"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[111, 112, 113])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    base = dict(data_root=args.data_root, category=args.category, textures=args.textures, preset="cpu",
                iterations=args.iterations, image_size=args.image_size)
    trained = {"reference": ("reference", None), "improved": ("improved", None),
               "all deviations": ("reference", {name: DEVIATION[name] for name in ROWS if name not in NOT_MEASURABLE})}
    for name in ROWS:
        if name not in SCORING_ONLY and name not in NOT_MEASURABLE:
            trained[f"+{name}"] = ("reference", {name: DEVIATION[name]})
    rescore = {f"+{name}": {name: DEVIATION[name]} for name in SCORING_ONLY}
    jobs, keys = [], []
    for seed in args.seeds:
        for label, (recipe, changes) in trained.items():
            config = {**base, "seed": seed, "recipe": recipe, "recipe_set": changes}
            jobs.append((config, rescore if label == "reference" else None))
            keys.append((label, seed))
    results = {}
    for (label, seed), result in zip(keys, run_all(jobs, args.jobs)):
        results.setdefault(label, {})[seed] = result["default"]
        if label == "reference":
            for name in rescore:
                results.setdefault(name, {})[seed] = result[name]
        print(label, seed, json.dumps(result["default"]), flush=True)

    lines = [
        f"# Recipe: the released code's recipe vs `improved` vs each single deviation ({args.category})", "",
        f"Budget: preset cpu (tf_efficientnet_lite0), {args.image_size} px, batch 4, {args.iterations} iterations "
        f"(reference: rounded up to whole epochs), DTD textures, seeds {', '.join(map(str, args.seeds))}; "
        "mean ± std over seeds, in percent; final models, no test-set selection.",
        f"Machine: {machine_line()}.",
        f"Command: `python bench/recipe.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        "Δ = mean difference to `reference` in points; **bold** where |Δ| exceeds the larger of the two std.", "",
        "| row | recipe | " + " | ".join(name for _, name in METRICS) + " |", "|---|---|" + "---|" * len(METRICS),
    ]
    ref = results["reference"]

    def row(label: str, title: str) -> str:
        cells = []
        for key, _ in METRICS:
            values = [results[label][s][key] for s in args.seeds]
            text = cell(values)
            if label != "reference":
                base_values = [ref[s][key] for s in args.seeds]
                delta = 100 * (statistics.fmean(values) - statistics.fmean(base_values))
                spread = 100 * max(statistics.stdev(values) if len(values) > 1 else 0,
                                   statistics.stdev(base_values) if len(values) > 1 else 0)
                mark = "**" if abs(delta) > spread else ""
                text += f" ({mark}Δ {delta:+.1f}{mark})"
            cells.append(text)
        return f"| {title} | " + " | ".join(cells) + " |"

    lines.append(row("reference", "— | `reference`"))
    lines.append(row("improved", "— | `improved` " + f"(deviations: {', '.join(IMPROVED.deviations()) or 'none'})"))
    lines.append(row("all deviations", "— | reference + every measurable deviation (rdexpert's recipe before this bench)"))
    for index, name in enumerate(ROWS, 1):
        label = f"+{name}"
        change = f"{name}: {RELEASED.to_dict()[name]} → {DEVIATION[name]}"
        if label in results:
            lines.append(row(label, f"{index} | reference + {change}"))
        else:
            lines.append(f"| {index} | {change} | " + NOT_MEASURABLE[name] + " |" + " |" * (len(METRICS) - 1))
    save_results(f"recipe_{args.category}", "\n".join(lines) + "\n", args=vars(args), results=results)


if __name__ == "__main__":
    main()
