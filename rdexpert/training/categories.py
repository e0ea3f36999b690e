"""Train every category of a dataset with one command, the categories split over torchrun's ranks.

``rdexpert train --category all`` (or ``a,b,c``) trains each category into ``OUT/<category>/``.
Under ``torchrun --nproc_per_node N [--nnodes M ...]`` rank r takes categories r, r + N·M, ...
(on ``cuda:LOCAL_RANK`` when there are GPUs), so a dataset spreads over processes, GPUs and
machines with no coordinator of our own. A finished category is skipped and an interrupted one
resumes from its state, so a restarted job (``torchrun --max-restarts``) picks up where it
stopped. Each category is tested when its dataset has a test split, and rank 0 writes
``OUT/summary.md`` and ``OUT/summary.json`` for all of them.
"""

from __future__ import annotations

import time
from pathlib import Path

from rdexpert.checkpoint.folder import read_config
from rdexpert.checkpoint.io import atomic_write, read_json, write_json
from rdexpert.checkpoint.pretrained import Checkpoint
from rdexpert.data import list_dataset_categories, list_samples
from rdexpert.evaluation.record import evaluate_checkpoint, split_record
from rdexpert.runtime import resolve_device
from rdexpert.training import distributed
from rdexpert.training.config import TrainConfig
from rdexpert.training.loop import train
from rdexpert.training.resume import resume_iteration

SUMMARY_METRICS = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "aupro": "AUPRO"}


def parse_categories(spec: str, data_root: str | Path) -> list[str]:
    """``all`` (every category folder of the root) or a comma-separated list, in the order given."""
    if spec.strip() == "all":
        return list_dataset_categories(data_root)
    names = list(dict.fromkeys(name.strip() for name in spec.split(",") if name.strip()))
    if not names:
        raise ValueError(f"--category {spec!r} names no category")
    missing = [name for name in names if not (Path(data_root) / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"categories not found in '{data_root}': {', '.join(missing)}; "
                                f"found there: {', '.join(list_dataset_categories(data_root))}")
    return names


def is_many(spec: str | None) -> bool:
    """Whether a ``--category`` value asks for several categories."""
    return spec is not None and (spec.strip() == "all" or "," in spec)


def is_finished(folder: Path) -> bool:
    """A saved checkpoint and no resume state: training of this category has completed."""
    return (folder / "config.json").is_file() and not (folder / "resume").exists()


def has_test_split(config: TrainConfig) -> bool:
    try:
        return any(s.label for s in list_samples(config.data_root, config.category, "test", layout=config.layout))
    except (FileNotFoundError, ValueError):  # a plain folder of normal images has no test split
        return False


def evaluate_category(folder: Path, config: TrainConfig, device: str) -> dict:
    """Test a trained category on its test split, store the report in ``folder/test`` and the metrics in its config."""
    report = folder / "test" / "metrics.json"
    if report.is_file() and (folder / "test" / "scores.csv").is_file():
        return read_json(report)  # tested before an interruption; the checkpoint has not changed since
    device = resolve_device(device)
    checkpoint = Checkpoint.from_pretrained(folder, map_location=device)
    samples = list_samples(config.data_root, config.category, "test", layout=config.layout)
    result = evaluate_checkpoint(checkpoint, samples, device=device, report=folder / "test",
                                 record=split_record(config.data_root, config.category))
    return result.metrics


def category_config(settings: dict, out: str | Path, category: str, worker: distributed.Worker) -> TrainConfig:
    """One category's run: its own folder, and the preset filled in for it (cable gets its longer schedule)."""
    return TrainConfig(**{**settings, "category": category, "out": str(Path(out) / category),
                          "device": worker.device(settings.get("device", "auto"))})


def train_category(config: TrainConfig, worker: distributed.Worker, test: bool, progress: bool) -> dict:
    """Train (or skip, or resume) one category; its summary row."""
    folder, category = Path(config.out), config.category
    row = {"category": category, **worker.describe(), "device": config.device}
    began = time.perf_counter()
    if is_finished(folder):
        row["status"] = "skipped: already trained"
    else:
        row["status"] = "resumed" if resume_iteration(folder) is not None else "trained"
        print(f"rank {worker.rank}: {row['status'].replace('trained', 'training')} {category} into {folder}", flush=True)
        train(config, progress=progress)
    training = read_config(folder).get("training", {})
    row.update(iterations=training.get("iterations_run"), train_seconds=training.get("train_seconds"),
               trained_by_rank=training.get("worker", {}).get("rank"))
    if test and has_test_split(config):
        row["metrics"] = {k: v for k, v in evaluate_category(folder, config, config.device).items() if k in SUMMARY_METRICS}
    row["wall_seconds"] = round(time.perf_counter() - began, 1)
    return row


def summary_markdown(rows: list[dict], world_size: int) -> str:
    header = ["category", "status", "trained by rank", "host", "device", "iterations", "train min",
              *SUMMARY_METRICS.values()]
    lines = [f"# Training summary: {len(rows)} categories over {world_size} process(es)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        metrics = row.get("metrics") or {}
        minutes = row.get("train_seconds")
        cells = [row["category"], row["status"], row.get("trained_by_rank"), row["host"], row["device"],
                 row.get("iterations"), f"{minutes / 60:.1f}" if minutes is not None else "",
                 *(f"{100 * metrics[k]:.1f}" if k in metrics else "–" for k in SUMMARY_METRICS)]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    scored = [row["metrics"] for row in rows if row.get("metrics")]
    if scored:
        means = [f"{100 * sum(m[k] for m in scored) / len(scored):.1f}" for k in SUMMARY_METRICS]
        lines.append("| **mean** | | | | | | | " + " | ".join(means) + " |")
    lines += ["", "Metrics in %: the test split of each category (`OUT/<category>/test/`); – where there is none."]
    return "\n".join(lines) + "\n"


def write_summary(out: Path, rows: list[dict], world_size: int) -> None:
    write_json(out / "summary.json", {"world_size": world_size, "categories": rows})
    text = summary_markdown(rows, world_size)
    atomic_write(out / "summary.md", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def train_many(settings: dict, out: str | Path, categories: list[str], test: bool = True,
               progress: bool = True) -> list[dict]:
    """Train this rank's share of ``categories`` into ``out/<category>``; rank 0 writes the summary of all.

    ``settings`` are :class:`TrainConfig` fields other than category and out. Every category's
    config is built (and checked) before any training. Returns every category's summary row (in
    the order given) on rank 0, this rank's rows elsewhere.
    """
    worker = distributed.Worker.from_env()
    configs = [category_config(settings, out, category, worker) for category in categories]
    grouped = distributed.start_group(worker, resolve_device(configs[0].device))
    worker.limit_cpu_threads()
    out = Path(out)
    try:
        mine = [train_category(config, worker, test, progress and worker.is_main) for config in worker.share(configs)]
        everyone = [row for rows in distributed.gather(mine) for row in rows]
        if not worker.is_main:
            return mine
        order = {name: i for i, name in enumerate(categories)}
        everyone.sort(key=lambda row: order[row["category"]])
        write_summary(out, everyone, worker.world_size)
        return everyone
    finally:
        if grouped:
            distributed.barrier()
            distributed.finish_group()
