"""Train every ablation variant with one seed and one budget, test each, print and store one table.

    python bench/ablation.py --iterations 300            # a reduced budget, stated in the table
    python bench/ablation.py                             # the full `cpu` preset (5 x ~20 min on 2 cores)

Results go to bench/results/ablation_<dataset>_<category>.{md,json}, with the machine.
Models are the final iterate: no selection on the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_info, machine_line  # noqa: E402

from rdexpert.checkpoint import load_checkpoint  # noqa: E402
from rdexpert.evaluate import evaluate_split, write_report  # noqa: E402
from rdexpert.io import read_json, write_json  # noqa: E402
from rdexpert.model import VARIANTS  # noqa: E402
from rdexpert.train import TrainConfig, train  # noqa: E402

COLUMNS = [("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"), ("pixel_ap", "pixel AP")]


def _finished_with(out: Path, config: TrainConfig) -> bool:
    """A finished run with exactly these settings (e.g. from an earlier, interrupted benchmark)."""
    try:
        saved = read_json(out / "config.json")["training"]
    except (OSError, KeyError, ValueError):
        return False
    wanted = json.loads(json.dumps(config.to_dict()))
    return all(saved.get(k) == v for k, v in wanted.items() if k not in {"device", "num_workers", "save_every"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data" / "mpdd"))
    parser.add_argument("--category", default="metal_plate")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--iterations", type=int, default=None, help="override the preset's iterations")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--textures", default=str(HERE.parent.parent / "shared" / "data" / "dtd" / "images"))
    parser.add_argument("--seed", type=int, default=111)
    parser.add_argument("--work", default=str(HERE.parent / "runs" / "ablation"))
    args = parser.parse_args()

    rows = {}
    budget = None
    for variant in args.variants:
        out = Path(args.work) / f"{args.category}_{variant}"
        config = TrainConfig(
            data_root=args.data_root, category=args.category, out=str(out), variant=variant, preset=args.preset,
            iterations=args.iterations, batch_size=args.batch_size, seed=args.seed, textures=args.textures,
        )
        budget = f"preset {config.preset}: {config.backbone}, {config.image_size} px, batch {config.batch_size}, {config.iterations} iterations, seed {config.seed}"
        if _finished_with(out, config):
            print(f"{variant}: reusing the finished run in {out}")
        else:
            train(config)
        model, saved = load_checkpoint(out)
        minutes = saved["training"]["train_seconds"] / 60
        result = evaluate_split(model, args.data_root, args.category)
        write_report(result, out / "test", variant, saved["calibration"].get("threshold"))
        rows[variant] = {**result.metrics, "train_minutes": minutes,
                         "seconds_per_iteration": saved["training"]["seconds_per_iteration"]}
        print(variant, {k: round(v, 4) for k, v in rows[variant].items()}, flush=True)

    lines = [
        f"# Ablation on {Path(args.data_root).name}/{args.category}",
        "",
        f"Budget: {budget}. Final model, no test-set selection.",
        f"Machine: {machine_line()}.",
        f"Command: `python bench/ablation.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "| variant | " + " | ".join(name for _, name in COLUMNS) + " | train minutes | s/iteration |",
        "|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for variant, row in rows.items():
        cells = [f"{100 * row[key]:.1f}" for key, _ in COLUMNS]
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {row['train_minutes']:.1f} | {row['seconds_per_iteration']:.2f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    results = HERE / "results"
    stem = f"ablation_{Path(args.data_root).name}_{args.category}"
    (results / f"{stem}.md").write_text(table)
    write_json(results / f"{stem}.json", {"budget": budget, "machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
