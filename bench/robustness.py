"""Robustness suite: `rd` vs `full` on metal_plate under conditions that mimic other
products, and on texture categories built from DTD; several seeds; mean ± std.

    python bench/robustness.py                          # all rows, rd / full / full_frozen, seeds 111 112 113
    python bench/robustness.py --rows dark grey --seeds 111 --iterations 100   # a quick look
    python bench/robustness.py --rows plain dtd_banded_cracked --columns rd full full_lr10x full_lr30x \
        --name robustness_drift         # stress test: does the safeguard catch a teacher pushed to drift?

Rows (data built by bench/robustness_data.py into bench/runs/data, never written to ../shared):

    metal_plate_dtd   the shipped setup: MPDD metal_plate, DTD textures, its table foreground
    plain             metal_plate as an unknown category: procedural textures, automatic foreground
    dark, grey, nonsquare   the same with darkened / grey / 4:3-squashed images
    dtd_banded_cracked, dtd_bubbly_cracked   normal = a DTD class, defects = another class pasted in

Columns: `rd`; `full` as shipped (teacher BatchNorm in training mode, as the released code; the
default reference chosen by the training health check); `full_frozen` = `full` with the teacher's
BatchNorm kept on the expert's statistics (`--teacher-bn frozen`). Every model is the final iterate.
The reported reference is the one the *current* rule (rdexpert.training.health.choose_reference) picks from
the health check stored in each checkpoint (held-out normal training images + synthetic defects);
the test split only measures the result. Runs are cached in
bench/runs/robustness/ so an interrupted suite resumes. Results: bench/results/robustness.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402
from robustness_data import CONDITIONS, SHARED, build_dtd, build_metal  # noqa: E402

ROWS = ("metal_plate_dtd", *CONDITIONS, "dtd_banded_cracked", "dtd_bubbly_cracked")
VARIANTS = {  # column -> (variant, teacher BatchNorm, teacher learning rate)
    "rd": ("rd", "batch", 1e-4),  # no trained teacher: the BatchNorm mode plays no part
    "full": ("full", "batch", 1e-4),  # the default recipe
    "full_frozen": ("full", "frozen", 1e-4),  # teacher BatchNorm kept on the expert's statistics
    # stress tests of the safeguard: a teacher pushed to drift with a 10x / 30x learning rate
    "full_lr10x": ("full", "batch", 1e-3),
    "full_lr30x": ("full", "batch", 3e-3),
}
DEFAULT_COLUMNS = ("rd", "full", "full_frozen")
METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"))
WORK = HERE / "runs" / "robustness"


def row_data(row: str) -> tuple[str, str, str | None]:
    """(data root, category, texture folder or None for procedural textures)."""
    if row == "metal_plate_dtd":
        return str(SHARED / "mpdd"), "metal_plate", str(SHARED / "dtd" / "images")
    if row.startswith("dtd_"):
        _, normal, other = row.split("_")
        return str(build_dtd(normal, other)), row, None
    return str(build_metal(row)), "plate", None


def run_one(row: str, column: str, seed: int, iterations: int, image_size: int) -> dict:
    """Train one model and test it with its default setting; cached in WORK."""
    import torch

    torch.set_num_threads(1)
    from rdexpert.checkpoint.folder import CheckpointInfo, load_checkpoint
    from rdexpert.checkpoint.io import read_json, write_json
    from rdexpert.evaluation.evaluate import evaluate_split
    from rdexpert.training.loop import TrainConfig, train

    out = WORK / f"{row}_{column}_{image_size}px_{iterations}it_s{seed}"
    done = out / "result.json"
    result = read_json(done) if done.is_file() else None
    if result is not None and "by_reference" in result:
        return result
    root, category, textures = row_data(row)
    if result is None:
        variant, teacher_bn, teacher_lr = VARIANTS[column]
        config = TrainConfig(data_root=root, category=category, out=str(out), variant=variant, preset="cpu",
                             iterations=iterations, image_size=image_size, seed=seed, textures=textures,
                             teacher_bn=teacher_bn, teacher_lr=teacher_lr, num_workers=0)
        train(config, progress=False)
    model, saved = load_checkpoint(out)
    info = CheckpointInfo.from_config(saved)
    by_reference = {}  # both references, to judge the health check's choice afterwards (never used to make it)
    for reference in (("teacher", "expert") if model.trained_teacher is not None else ("teacher",)):
        metrics = evaluate_split(model, root, category, reference=reference, progress=False).metrics
        by_reference[reference] = {k: metrics[k] for k, _ in METRICS}
    result = {"row": row, "column": column, "seed": seed, "reference": info.default_reference,
              "health": info.health.get("final"), **by_reference[info.default_reference],
              "by_reference": by_reference}
    write_json(done, result)
    return result


def with_current_rule(result: dict) -> dict:
    """The result as the current reference rule would report it (the stored check decides, not the test)."""
    from rdexpert.training.health import choose_reference

    if "expert" not in result.get("by_reference", {}):
        return result
    reference = choose_reference(result["health"])[0]
    return {**result, "reference": reference, **result["by_reference"][reference]}


def _cell(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def table(results: list[dict], columns: list[str], seeds: list[int], header: str) -> str:
    lines = [header, "", "| row | metric | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    rows = list(dict.fromkeys(r["row"] for r in results))
    for row in rows:
        for key, name in METRICS:
            cells = []
            for column in columns:
                values = [r[key] for r in results if r["row"] == row and r["column"] == column]
                cells.append(_cell(values) if values else "—")
            lines.append(f"| {row} | {name} | " + " | ".join(cells) + " |")
        refs = [r["reference"] for r in results if r["row"] == row and r["column"] == "full"]
        if refs:
            lines.append(f"| {row} | `full` default reference | " + ", ".join(refs) + " |" + " |" * (len(columns) - 1))
    return "\n".join(lines) + "\n"


def reference_table(results: list[dict]) -> str:
    """For the trained-teacher columns: P-AUROC / AUPRO with each reference, and what the health check chose."""
    lines = ["| row | column | P-AUROC teacher ref | P-AUROC expert ref | AUPRO teacher ref | AUPRO expert ref | "
             "health check chose |", "|---|---|---|---|---|---|---|"]
    for row in dict.fromkeys(r["row"] for r in results):
        for column in dict.fromkeys(r["column"] for r in results if r["column"] != "rd"):
            runs = [r for r in results if r["row"] == row and r["column"] == column and "expert" in r.get("by_reference", {})]
            if not runs:
                continue
            cells = [_cell([r["by_reference"][ref][key] for r in runs])
                     for key in ("pixel_auroc", "aupro") for ref in ("teacher", "expert")]
            cells = [cells[0], cells[1], cells[2], cells[3]]
            chose = ", ".join(r["reference"] for r in runs)
            lines.append(f"| {row} | {column} | " + " | ".join(cells) + f" | {chose} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--columns", nargs="+", default=list(DEFAULT_COLUMNS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[111, 112, 113])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--name", default="robustness", help="results file stem under bench/results/")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    args = parser.parse_args()

    for row in args.rows:  # build the data once, before the workers start
        row_data(row)
    jobs = [(row, column, seed, args.iterations, args.image_size)
            for seed in args.seeds for row in args.rows for column in args.columns]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = []
        for result in pool.map(run_one, *zip(*jobs)):
            result = with_current_rule(result)
            print(json.dumps(result), flush=True)
            results.append(result)
    header = "\n".join([
        "# Robustness: `rd` vs `full` under other products' conditions",
        "",
        f"Budget: preset cpu (tf_efficientnet_lite0), {args.image_size} px, batch 4, {args.iterations} iterations, "
        f"seeds {', '.join(map(str, args.seeds))}; mean ± std over seeds, in percent. Final models, no test-set selection.",
        f"Machine: {machine_line()}.",
        f"Command: `python bench/robustness.py {' '.join(sys.argv[1:])}`".rstrip(),
    ])
    text = table(results, args.columns, args.seeds, header)
    text += ("\nThe same trained-teacher models scored against each reference (the test split only judges "
             "the choice the health check made on held-out normal images + synthetic defects):\n\n")
    text += reference_table(results)
    save_results(args.name, text, args=vars(args), results=results)


if __name__ == "__main__":
    main()
