"""Every real category under ../shared/data: `rd` vs the default `full` (and `full` scored against its expert),
several seeds; the safeguard's choices and the calibration's estimates checked against the test split.

    python bench/categories.py                                  # quick preset, seeds 111 112 113
    python bench/categories.py --preset cpu --seeds 111         # the cpu preset, one seed
    python bench/categories.py --categories tire --columns full full_fg_none --seeds 111   # a cause experiment

Categories are found automatically: every folder under ../shared/data with ``train/good`` and ``test``
(MVTec-style layout). Columns are ``rd``, ``full`` (the method's defaults) and the one-change experiments of
:data:`COLUMNS` (foreground, teacher BatchNorm, teacher learning rate, input fit, recipe), used to find the
cause of a collapse. Every trained-teacher model is tested against both references, so the table can show
`full` as shipped (the reference its own health check picked on held-out normal images + synthetic defects,
never on the test split) and `full`·expert; the test split only judges that choice afterwards.

Each run is cached in bench/runs/categories/<preset>/ (result.json): an interrupted suite resumes where it
stopped. Runs go one at a time by default; ``--jobs 2`` runs two single-threaded trainings side by side (the
same two cores). Results: bench/results/categories_<preset>.{md,json}, with the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data"
WORK = HERE / "runs" / "categories"
# column -> (variant, TrainConfig overrides): one change each against the defaults
COLUMNS: dict[str, tuple[str, dict]] = {
    "rd": ("rd", {}),
    "full": ("full", {}),
    "rd_gii": ("rd_gii", {}),
    "rd_expert": ("rd_expert", {}),
    "full_fg_none": ("full", {"foreground": "none"}),
    "full_fg_auto": ("full", {"foreground": "auto"}),
    "full_fg_grabcut": ("full", {"foreground": "grabcut"}),
    "full_fg_grabcut_bn_frozen": ("full", {"foreground": "grabcut", "teacher_bn": "frozen"}),
    "rd_gii_fg_grabcut": ("rd_gii", {"foreground": "grabcut"}),
    "rd_squash": ("rd", {"recipe_set": {"input_fit": "squash"}}),
    "full_teacher_bn_frozen": ("full", {"teacher_bn": "frozen"}),
    "full_teacher_lr_low": ("full", {"teacher_lr": 1e-5}),
    "full_squash": ("full", {"recipe_set": {"input_fit": "squash"}}),
    "rd_pad": ("rd", {"recipe_set": {"input_fit": "pad"}}),
    "full_pad": ("full", {"recipe_set": {"input_fit": "pad"}}),
    "full_bn_frozen_lr3e-4": ("full", {"teacher_bn": "frozen", "teacher_lr": 3e-4}),
    "full_bn_frozen_lr1e-3": ("full", {"teacher_bn": "frozen", "teacher_lr": 1e-3}),
    "full_reference": ("full", {"recipe": "released"}),
    "full_dtd": ("full", {"textures": str(SHARED / "dtd" / "images")}),
}
# columns trained by an earlier commit's code (commit, extra `rdexpert train` flags): the defaults before issue 19's
# fix, and the cause experiment's one-change variants of them
BEFORE_COMMIT = "1061e9d"
BEFORE: dict[str, tuple[str, list[str]]] = {
    "full_before": (BEFORE_COMMIT, []),
    "before_fg_none": (BEFORE_COMMIT, ["--foreground", "none"]),
    "before_fg_grabcut": (BEFORE_COMMIT, ["--foreground", "grabcut"]),
    "before_teacher_bn_frozen": (BEFORE_COMMIT, ["--teacher-bn", "frozen"]),
    "before_squash": (BEFORE_COMMIT, ["--recipe-set", "input_fit=squash"]),
}
COLUMNS.update({name: ("full", {}) for name in BEFORE})
METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"))


def train_at_commit(commit: str, flags: list[str], variant: str, data_root, category: str, out: Path, preset: str,
                    seed: int, threads: int) -> None:
    """``rdexpert train [flags]`` as it was at ``commit`` (a git worktree under bench/runs/), procedural textures."""
    import os
    import subprocess

    tree = HERE / "runs" / f"worktree_{commit}"
    if not tree.is_dir():
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree), commit], check=True,
                       capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "rdexpert.cli", "train", "--data-root", str(data_root), "--category", category,
                    "--variant", variant, "--preset", preset, "--seed", str(seed), "--out", str(out), "--no-test", *flags],
                   check=True, env=env, cwd=tree, capture_output=True)


def find_categories(root: Path = SHARED) -> dict[str, Path]:
    """name -> data root of every MVTec-style category folder (``<root>/<dataset>/<category>/train/good``)."""
    found = {}
    for good in sorted(root.glob("*/*/train/good")):
        category = good.parent.parent
        if (category / "test").is_dir():
            found[category.name] = category.parent
    return found


def run_one(category: str, data_root: str, column: str, seed: int, preset: str, threads: int) -> dict:
    """Train one model, test it against each reference, compare its calibration with the test split; cached."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from rdexpert.checkpoint.folder import CheckpointInfo, load_checkpoint
    from rdexpert.checkpoint.io import read_json, write_json
    from rdexpert.evaluation.evaluate import evaluate_split
    from rdexpert.training.loop import TrainConfig, train

    out = WORK / preset / f"{category}_{column}_s{seed}"
    done = out / "result.json"
    if done.is_file():
        cached = read_json(done)
        if cached["column"] in BEFORE or "faint_missed" in (cached.get("calibration_estimates") or {}):
            return {**cached, "column": column}  # (a folder renamed to another column keeps its run)
        # else: tested before the current health check; check and test again (no retraining)
    variant, overrides = COLUMNS[column]
    if not (out / "config.json").is_file() or (out / "resume").exists():
        if column in BEFORE:  # trained by the code of an earlier commit (a worktree of it), tested by today's
            train_at_commit(*BEFORE[column], variant, data_root, category, out, preset, seed, threads)
        else:
            config = TrainConfig(data_root=str(data_root), category=category, out=str(out), variant=variant,
                                 preset=preset, seed=seed, num_workers=0, **overrides)
            train(config, progress=False)
    if column not in BEFORE:
        apply_current_check(out)
    model, saved = load_checkpoint(out)
    model.prepare_for_inference()
    info = CheckpointInfo.from_config(saved)
    calibration = saved.get("calibration", {})
    threshold = calibration["threshold"]
    by_reference = {}
    for reference in (("teacher", "expert") if model.trained_teacher is not None else ("teacher",)):
        evaluation = evaluate_split(model, data_root, category, reference=reference, progress=False)
        scores, labels = evaluation.scores, evaluation.labels.astype(bool)
        by_reference[reference] = {k: evaluation.metrics[k] for k, _ in METRICS}
        by_reference[reference]["test_rates"] = {  # at the stored threshold (calibrated for the default reference)
            "normal_flagged": int((scores[~labels] >= threshold).sum()), "normal_images": int((~labels).sum()),
            "defects_missed": int((scores[labels] < threshold).sum()), "defect_images": int(labels.sum())}
    default = info.default_reference
    result = {"category": category, "column": column, "seed": seed, "preset": preset, "reference": default,
              "health": info.health.get("final"), "health_history": read_json(out / "loss_history.json").get("health"),
              "calibration_estimates": calibration.get("estimates"),
              "foreground_method": saved.get("training", {}).get("foreground_method"),
              "train_seconds": saved.get("training", {}).get("train_seconds"),
              **{k: v for k, v in by_reference[default].items()}, "by_reference": by_reference}
    write_json(done, result)
    return result


def apply_current_check(out: Path) -> None:
    """Give a checkpoint trained before the current health check its final check and reference choice.

    The check never feeds back into training (its images and anomalies have their own seeds), so running it on
    the final weights afterwards gives what training with today's code ends with: the same check set (the run's
    held-out images, synthesizer and seed), the same rule; the threshold is re-calibrated when the choice changes.
    """
    import torch

    from rdexpert.checkpoint.folder import load_checkpoint, read_config, training_split, update_config
    from rdexpert.training.calibrate_threshold import recalibrate_checkpoint
    from rdexpert.training.config import TrainConfig
    from rdexpert.training.health import HEALTH_MAX_IMAGES, check_health, choose_reference, health_set_of

    config = read_config(out)
    health = config.get("health") or {}
    if "faint_scores" not in config.get("calibration", {}):  # calibrated before the faint estimate existed
        recalibrate_checkpoint(out)
    if config["model"]["variant"] not in ("full", "full_plain", "rd_expert") or "faint_separation_teacher" in health.get(
            "final", {}):
        return
    model, _ = load_checkpoint(out)
    training = config["training"]
    run = TrainConfig.from_dict(training)
    train_samples, holdout = training_split(config)
    check_set = health_set_of((holdout or train_samples)[:HEALTH_MAX_IMAGES], model.config,
                              run.synthesizer(training["foreground_method"]), draws=run.health_draws)
    final = {"iteration": health.get("final", {}).get("iteration"), **check_health(model, check_set, torch.device("cpu"))}
    reference, reason = choose_reference(final)
    changed = reference != config["model"].get("default_reference")
    update_config(out, model={**config["model"], "default_reference": reference},
                  health={**health, "final": final, "reason": reason, "rechecked_after_training": True})
    if changed:
        recalibrate_checkpoint(out)


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}" if len(values) > 1 else f"{mean:.1f}"


def metric_table(results: list[dict], columns: list[str]) -> str:
    """Per category and metric: each column as shipped (its own default reference), and `full`·expert."""
    shown = [*columns, *(f"{c}·expert" for c in columns if COLUMNS[c][0] in ("full", "rd_expert"))]
    lines = ["| category | metric | " + " | ".join(f"`{c}`" for c in shown) + " |", "|---|---|" + "---|" * len(shown)]
    for category in dict.fromkeys(r["category"] for r in results):
        for key, name in METRICS:
            cells = []
            for column in shown:
                base, _, ref = column.partition("·")
                runs = [r for r in results if r["category"] == category and r["column"] == base]
                values = [r["by_reference"][ref][key] if ref else r[key] for r in runs if not ref or ref in r["by_reference"]]
                cells.append(_cell(values))
            lines.append(f"| {category} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def safeguard_table(results: list[dict]) -> str:
    """How often the reference the health check picked is the better one on the test split, and the cost."""
    lines = ["| category | column | seed | picked | P-AUROC teacher / expert | AUPRO teacher / expert | right? | "
             "AUPRO lost by the pick |", "|---|---|---|---|---|---|---|---|"]
    right = total = 0
    for r in results:
        refs = r["by_reference"]
        if "expert" not in refs:
            continue
        t, e = refs["teacher"], refs["expert"]
        better = "teacher" if t["aupro"] + t["pixel_auroc"] >= e["aupro"] + e["pixel_auroc"] else "expert"
        lost = max(0.0, max(t["aupro"], e["aupro"]) - refs[r["reference"]]["aupro"])
        ok = r["reference"] == better or lost < 0.005
        right += ok
        total += 1
        lines.append(f"| {r['category']} | {r['column']} | {r['seed']} | {r['reference']} | "
                     f"{100 * t['pixel_auroc']:.1f} / {100 * e['pixel_auroc']:.1f} | {100 * t['aupro']:.1f} / "
                     f"{100 * e['aupro']:.1f} | {'yes' if ok else 'no'} | {100 * lost:.1f} |")
    return f"Picked the better reference (or one within 0.5 AUPRO points of it) in {right} of {total} runs.\n\n" + \
        "\n".join(lines) + "\n"


def calibration_table(results: list[dict]) -> str:
    """The calibration's own estimates (held-out normals + synthetic anomalies) next to the test split's rates."""
    lines = ["| category | column | seed | normals flagged: estimate | on test | synthetic missed: estimate | "
             "faint synthetic missed: estimate | defects missed on test |", "|---|---|---|---|---|---|---|---|"]

    def share(e: dict, part: str, whole: str) -> str:
        return f"{e[part]}/{e[whole]} ({100 * e[part] / e[whole]:.0f} %)" if e.get(whole) else "—"

    for r in results:
        e, t = r.get("calibration_estimates") or {}, r["by_reference"][r["reference"]]["test_rates"]
        lines.append(f"| {r['category']} | {r['column']} | {r['seed']} | {share(e, 'normal_flagged', 'normal_images')} | "
                     f"{share(t, 'normal_flagged', 'normal_images')} | {share(e, 'synthetic_missed', 'synthetic_anomalies')} | "
                     f"{share(e, 'faint_missed', 'faint_anomalies')} | {share(t, 'defects_missed', 'defect_images')} |")
    return "\n".join(lines) + "\n"


def validate_safeguard(preset: str) -> None:
    """The safeguard table over every cached run of ``preset`` trained by today's code with a trained teacher."""
    from rdexpert.checkpoint.io import read_json
    from rdexpert.training.health import choose_reference

    results = []
    for path in sorted((WORK / preset).glob("*/result.json")):
        result = read_json(path)
        if result["column"] in BEFORE or "expert" not in result["by_reference"] or \
                "faint_separation_teacher" not in (result.get("health") or {}):
            continue
        results.append({**result, "reference": choose_reference(result["health"])[0]})
    text = "\n".join([
        f"# The safeguard on every cached `{preset}` run with a trained teacher",
        "",
        "Each run's default reference as the current rule (rdexpert.training.health.choose_reference) picks it from the run's own "
        "final health check (held-out normal training images + synthetic and faint synthetic anomalies; no test "
        "image), against which reference is better on the test split (P-AUROC + AUPRO). Columns are the one-change "
        "experiments of bench/categories.py; every run was trained and checked by today's code.",
        f"Machine: {machine_line()}.",
        f"Command: `python bench/categories.py --preset {preset} --validate-safeguard`",
        "", safeguard_table(results)])
    save_results(f"safeguard_{preset}", text, results=[{k: r[k] for k in ("category", "column", "seed", "reference",
                                                                           "health", "by_reference")} for r in results])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    found = find_categories()
    parser.add_argument("--categories", nargs="+", default=list(found), choices=list(found))
    parser.add_argument("--columns", nargs="+", default=["rd", "full"], choices=list(COLUMNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[111, 112, 113])
    parser.add_argument("--preset", default="quick", choices=["quick", "cpu", "paper"])
    parser.add_argument("--jobs", type=int, default=1, help="trainings side by side (each gets 2 // jobs threads)")
    parser.add_argument("--name", default=None, help="results file stem (default categories_<preset>)")
    parser.add_argument("--validate-safeguard", action="store_true",
                        help="train nothing: judge the current reference rule on every cached trained-teacher run of "
                             "the preset (today's code, checked with today's health check) -> safeguard_<preset>")
    args = parser.parse_args()
    if not found:
        sys.exit(f"no MVTec-style category found under {SHARED}")
    if args.validate_safeguard:
        validate_safeguard(args.preset)
        return

    jobs = [(c, str(found[c]), column, seed, args.preset, max(1, 2 // args.jobs))
            for seed in args.seeds for c in args.categories for column in args.columns]
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(run_one, *zip(*jobs)):
            print(json.dumps({k: result[k] for k in ("category", "column", "seed", "reference", "pixel_auroc", "aupro")}),
                  flush=True)
            results.append(result)
    text = "\n".join([
        f"# Every real category: `rd` vs the default `full` ({args.preset} preset)",
        "",
        f"Categories found under ../shared/data: {', '.join(args.categories)}. Preset `{args.preset}`, seeds "
        f"{', '.join(map(str, args.seeds))}; mean ± std over seeds, in percent. Final models, no test-set selection; "
        "each column as shipped (the reference its own health check picked), `·expert` = the same model scored "
        "against its frozen expert.",
        f"Machine: {machine_line()}.",
        f"Command: `python bench/categories.py {' '.join(sys.argv[1:])}`".rstrip(),
        "", metric_table(results, args.columns),
        "## The safeguard: did the health check pick the better reference?", "", safeguard_table(results),
        "## Calibration: its estimates vs the test split at the shipped threshold", "", calibration_table(results),
    ])
    save_results(args.name or f"categories_{args.preset}", text, args=vars(args), results=results)


if __name__ == "__main__":
    main()
