"""Evaluate a checkpoint and record what was measured: the one way the CLI, the zoo and the app do it.

Why one function: ``rdexpert test``, training many categories, the app's Fine-tune and its Evaluate tab each
used to load, prepare, evaluate, report and store in their own way, and drifted apart (one evaluated the
model unprepared). Here the model always runs as the Predictor runs it (a prepared copy: BatchNorm folded;
the same maps within float rounding), the report goes where asked, and the metrics go into the checkpoint's
config.json under ``metrics[reference/gate]`` with the split they were measured on.
"""

from __future__ import annotations

import math
from pathlib import Path

from rdexpert.checkpoint.folder import record_metrics
from rdexpert.checkpoint.pretrained import Checkpoint
from rdexpert.evaluation.evaluate import Evaluation, evaluate, write_report
from rdexpert.model import ExpertTeacherStudent


def evaluate_checkpoint(
    checkpoint: Checkpoint,
    samples: list,
    *,
    device="cpu",
    reference: str | None = None,
    gate: str = "gated",
    report: str | Path | None = None,
    record: dict | None = None,
    model: ExpertTeacherStudent | None = None,
    progress: bool = False,
) -> Evaluation:
    """Run ``checkpoint`` over the labelled ``samples``.

    ``report``: a folder for metrics.json, metrics.md, scores.csv and overlays. ``record``: where the samples came
    from (``{"split": ..., "dataset": ..., "category": ...}``); given, the finite metrics are stored in the
    checkpoint's config.json, with the F1-optimal threshold when this is its default setting. ``model``: an
    already prepared model of this checkpoint (the app's Predictor's), else a prepared copy is made.
    """
    info = checkpoint.info
    result = evaluate(model or checkpoint.prepared_model(), samples, device=device, reference=reference, gate=gate,
                      progress=progress)
    name = f"{info.variant} ({(record or {}).get('category') or info.category})"
    if report is not None:
        write_report(result, report, name, info.threshold)
    if record is not None:
        if not checkpoint.is_local:
            raise ValueError("recording metrics writes into the checkpoint's config.json, so it needs a local "
                             f"checkpoint folder, not {checkpoint.source.get('reference', 'a Hub checkpoint')}")
        setting = f"{reference or info.default_reference}/{gate}"
        measured = {**record, "images": len(result.scores), "defective": int(result.labels.sum()),
                    **finite_metrics(result)}
        f1 = result.metrics.get("f1_threshold") if setting == info.default_setting else None
        record_metrics(checkpoint.folder, setting, measured, f1_threshold=f1)
    return result


def finite_metrics(result: Evaluation) -> dict[str, float]:
    """The metrics that were measurable (pixel metrics are NaN when no defective image has a mask)."""
    return {k: float(v) for k, v in result.metrics.items() if math.isfinite(float(v))}


def split_record(data_root, category: str | None) -> dict:
    """``record`` for a dataset's labelled test split."""
    return {"split": "test", "dataset": Path(data_root).resolve().name, "category": category}
