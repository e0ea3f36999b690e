"""Shared by the seed-averaged benches (recipe, ablation): train one configuration, test it, cache the
result, run many in parallel single-threaded processes, and print mean ± std cells.

Why: on a 2-core machine two single-threaded runs side by side are much faster than two runs
fighting over both cores, and a cached result lets an interrupted bench resume.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"), ("pixel_ap", "pixel AP"))


def run_folder(config: dict) -> Path:
    """Where the run of ``config`` is cached: named by everything that sets it apart, so every bench that
    trains the same configuration (e.g. `full` with the `improved` recipe) shares one run."""
    changes = "".join(f"_{k}={v}" for k, v in sorted((config.get("recipe_set") or {}).items()))
    textures = "" if config.get("textures") else "_procedural"
    name = (f"{config['category']}_{config.get('variant', 'full')}_{config.get('recipe', 'improved')}{changes}{textures}"
            f"_{config['image_size']}px_{config['iterations']}it_s{config['seed']}")
    return HERE / "runs" / "seeded" / name


def train_and_test(out: str, config: dict, rescore: dict | None = None) -> dict:
    """Train ``TrainConfig(**config, out=out)`` unless finished there, test it on the category's test split.

    ``rescore``: name -> ModelConfig changes (scoring-only choices such as the blur border) to test the
    same trained model with as well. Returns {"default": metrics, name: metrics, ...}; cached in out/result.json.
    """
    import torch

    torch.set_num_threads(1)
    from dataclasses import replace

    from rdexpert.checkpoint.folder import load_checkpoint
    from rdexpert.checkpoint.io import read_json, write_json
    from rdexpert.evaluation.evaluate import evaluate_split
    from rdexpert.training.loop import TrainConfig, train

    done = Path(out) / "result.json"
    result = read_json(done) if done.is_file() else {}
    wanted = {"default": {}, **(rescore or {})}
    if set(wanted) <= set(result):
        return result
    if not (Path(out) / "config.json").is_file():
        train(TrainConfig(**config, out=out, num_workers=0), progress=False)
    model, saved = load_checkpoint(out)
    stored = model.config
    for name, changes in wanted.items():
        if name in result:
            continue
        model.config = replace(stored, **changes)  # one switch at a time, from the stored choices
        metrics = evaluate_split(model, config["data_root"], config["category"], progress=False).metrics
        result[name] = {key: metrics[key] for key, _ in METRICS}
    result["train_seconds"] = saved["training"]["train_seconds"]
    write_json(done, result)
    return result


def run_all(jobs: list[tuple[dict, dict | None]], processes: int = 2) -> list[dict]:
    """``train_and_test`` for every (config, rescore) in its :func:`run_folder`, ``processes`` at a time, in order."""
    with ProcessPoolExecutor(processes) as pool:
        return list(pool.map(train_and_test, [str(run_folder(c)) for c, _ in jobs], *zip(*jobs)))


def cell(values: list[float]) -> str:
    """Mean ± sample std in percent."""
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"
