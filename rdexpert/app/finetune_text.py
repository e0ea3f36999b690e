"""What the Fine-tune tab says: its introduction, the progress line, and the result in plain words.

Why apart from the handlers: the words a person reads at the end of a run (which reference the model scores
against and why, what its calibration says) are the same for a fresh fine-tune and a loaded zip.
"""

from __future__ import annotations

import re
from pathlib import Path

from rdexpert.app import views
from rdexpert.app.common import AppConfig
from rdexpert.app.finetune import FineTuneJob
from rdexpert.inference.calibration import Calibration


def intro(cfg: AppConfig) -> str:
    ul, fl = cfg.upload_limits, cfg.finetune_limits
    return (
        "Train a model on **your own normal images** (optionally with defective images, with or without "
        "masks, to measure it). Upload images, or **one .zip**: images at its top level or in `good/` / "
        "`normal/` are normal, in `defect/` (`bad/`, `anomaly/`, MVTec `test/<type>/`) defective, in "
        "`mask/` (`ground_truth/`) masks matched by name (`x.png` or `x_mask.png`). Training starts from "
        "the pretrained backbone (or, with **Warm start**, from the trained weights of the checkpoint in "
        "\"Start from\": on metal_plate 100 warm iterations matched 200 from scratch); the threshold is "
        "calibrated on held-out normal images at the end, and the model becomes selectable above.\n\n"
        f"**Limits:** {ul.describe()}; {fl.min_iterations}–{fl.max_iterations} iterations. Zips with "
        "absolute paths, `..` entries, links or non-image files are refused. One fine-tune runs at a "
        "time (others wait in the queue). The default is the `quick` preset (128 px, 200 iterations): on 2 "
        "free CPU cores about 2 minutes from start to a calibrated model (1.5 for the training alone; longer "
        "while the server is busy: the progress bar measures the speed and says the time left), 99.4 % image "
        "and 95.5 % pixel AUROC on metal_plate; 256 px takes about 4x longer per iteration. Cancel keeps "
        "nothing selectable.\n\n**Private to this page:** your uploads and fine-tuned models are visible only in "
        "this browser tab, and are gone when you close or reload it; download the zip to keep a model, and load "
        "it back below (*Load a downloaded model*). The server deletes them later."
    )


def outcome_text(info) -> str:
    """What a trained model is, in plain words: the reference it scores against and why, what its threshold's
    calibration data says (and a warning when most synthetic defects would pass)."""
    try:
        calibration = Calibration.from_dict(info.calibration)
        estimates, warning = calibration.estimates(), calibration.miss_warning()
    except (ValueError, TypeError, KeyError):
        estimates, warning = {}, None
    parts = [views.reference_sentence(info.default_reference, info.health), views.calibration_sentence(estimates)]
    if warning:
        parts.append(f"**⚠ {warning}.**")
    return "\n\n".join(part for part in parts if part)


def finished_text(entry, job: FineTuneJob, metrics: dict | None, has_defects: bool) -> str:
    info = entry.info
    thr = info.threshold
    text = (
        f"**Finished**: `{entry.key}` is now selectable in the checkpoint list. Threshold calibrated on "
        f"{len(info.calibration.get('holdout_scores', []))} held-out normal image(s): raw "
        f"{thr:.4f}."
        if thr is not None
        else f"**Finished**: `{entry.key}` (no threshold calibrated)."
    )
    outcome = outcome_text(info)
    if outcome:
        text += "\n\n" + outcome
    if metrics:
        text += (
            f"\n\nMetrics on {len(job.eval_samples)} labelled images (held-out normal + uploaded "
            "defective):\n\n" + views.metrics_markdown({entry.key: metrics})
        )
    elif has_defects:
        text += "\n\nNo metrics: the evaluation needs normal and defective images."
    else:
        text += "\n\nNo metrics: upload defective images to measure the model."
    return text


def progress_line(snap: dict) -> str:
    """:func:`views.progress_html` of a job's snapshot."""
    return views.progress_html(
        snap["iteration"], snap["iterations"], snap["status"], snap["elapsed"], snap["seconds_per_iteration"]
    )


def markdown_bold(text: str) -> str:
    """The few ``**bold**`` marks of :func:`outcome_text`, as HTML (the status is an HTML component)."""
    import html as _html

    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", _html.escape(text)).replace("\n\n", "<br>")


def upload_summary(files) -> str:
    """"12 files, 3.4 MB": what an upload's long file list collapses to on a phone (CSS in ui.py hides the list)."""
    if not files:
        return ""
    paths = [Path(f) for f in files]
    megabytes = sum(p.stat().st_size for p in paths if p.is_file()) / 1e6
    size = f"{megabytes:.1f} MB" if megabytes >= 1 else f"{1000 * megabytes:.0f} kB"
    return f"{len(paths)} file{'' if len(paths) == 1 else 's'}, {size}"
