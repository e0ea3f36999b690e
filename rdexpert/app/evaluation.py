"""Evaluate a loaded checkpoint on its labelled test images, for the app's Evaluate tab."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdexpert.app.registry import Entry, public_text
from rdexpert.checkpoint.io import read_json
from rdexpert.data import Sample, list_samples


class NoTestSplit(ValueError):
    """The checkpoint's test images are not on this machine (the message says where they were looked for)."""


def resolve_dataset_root(root: str, search: list[Path]) -> Path | None:
    """A dataset root from a config: absolute, or relative to the working folder or one of ``search``."""
    path = Path(os.path.expanduser(root))
    if path.is_absolute():
        return path if path.is_dir() else None
    for base in [Path.cwd(), *search]:
        candidate = (base / path).resolve()
        if candidate.is_dir():
            return candidate
    return None


def labelled_samples(entry: Entry, search: list[Path]) -> tuple[list[Sample], str]:
    """The labelled images to evaluate ``entry`` on, and a sentence saying what they are."""
    if entry.eval_samples:
        n = len(entry.eval_samples)
        return list(entry.eval_samples), (
            f"{n} images: held-out normal images of the upload (also used for the threshold) and the uploaded "
            "defective images"
        )
    dataset = entry.info.dataset
    root, category = dataset.get("root"), dataset.get("category")
    if not root:
        raise NoTestSplit("This checkpoint's config.json names no dataset root, so there is no test split to use.")
    folder = resolve_dataset_root(str(root), [*search, *([entry.folder] if entry.folder else [])])
    if folder is None:
        raise NoTestSplit(
            f"The test split of this checkpoint (dataset root `{public_text(root)}`, category `{category}`) is not on this "
            "machine. Put the dataset there (relative paths are resolved from the working folder and the app "
            "folder) to evaluate."
        )
    layout = dataset.get("layout") or "auto"
    try:
        samples = list_samples(folder, category, "test", layout=layout)
    except (ValueError, FileNotFoundError) as error:
        raise NoTestSplit(f"No test split for `{category}` in `{folder.name}`: {public_text(error)}") from None
    if not any(s.label == 1 for s in samples) or not any(s.label == 0 for s in samples):
        raise NoTestSplit(f"The test split in `{folder.name}` needs both normal and defective images.")
    # the page names the dataset folder, not where it is on the server
    return samples, f"test split of `{category}` in `{folder.name}` ({len(samples)} images)"


@dataclass
class EvaluationView:
    """What the Evaluate tab shows; kept per checkpoint so a second look costs nothing."""

    key: str
    description: str
    metrics: dict
    scores: np.ndarray
    normalized: np.ndarray
    labels: np.ndarray
    paths: list[str]
    maps: np.ndarray | None  # None for stored results: no maps were kept
    masks: np.ndarray | None
    seconds: float
    device: str
    stored: bool = False  # read from the checkpoint's test report, not run here: rows name no file to open
    every_score: bool = True  # False for an old stored report: the overlays' scores only (no ROC from those)
    overlays: dict[int, str] | None = None  # stored results: image index -> the overlay `rdexpert test` drew of it

    def table(self, threshold: float = 0.5) -> list[list]:
        """Rows sorted by score, highest first: file, truth, raw score, calibrated score, verdict, correct."""
        order = np.argsort(-self.scores, kind="mergesort")
        rows = []
        for rank, i in enumerate(order, 1):
            predicted = int(self.normalized[i] >= threshold)
            rows.append(
                [
                    rank,
                    Path(self.paths[i]).name,
                    "defective" if self.labels[i] else "normal",
                    round(float(self.scores[i]), 4),
                    round(float(self.normalized[i]), 3),
                    "anomalous" if predicted else "normal",
                    "yes" if predicted == self.labels[i] else "no",
                ]
            )
        return rows

    def ordered_paths(self) -> list[str]:
        """The images in table order, for opening a row in Inspect; none for stored results (no files here)."""
        if self.stored:
            return []
        return [self.paths[i] for i in np.argsort(-self.scores, kind="mergesort")]

    def ordered_rows(self) -> list[dict]:
        """What a click on each row (in table order) can open: the image file and its ground truth (run in
        Inspect), or for stored results the stored score and, when `rdexpert test` drew one, the overlay."""
        rows = []
        for i in np.argsort(-self.scores, kind="mergesort"):
            rows.append({
                "path": None if self.stored else self.paths[i],
                "name": Path(self.paths[i]).name,
                "truth": "defective" if self.labels[i] else "normal",
                "score": float(self.scores[i]),
                "normalized": float(self.normalized[i]),
                "overlay": (self.overlays or {}).get(int(i)),
            })
        return rows

    def accuracy(self, threshold: float = 0.5) -> float:
        return float(np.mean((self.normalized >= threshold).astype(int) == self.labels))


TABLE_HEADERS = ["#", "image", "truth", "raw score", "calibrated", "verdict", "correct"]


def run_evaluation(key: str, entry: Entry, predictor, search: list[Path], progress: bool = False) -> EvaluationView:
    from rdexpert.checkpoint.pretrained import Checkpoint
    from rdexpert.evaluation.record import evaluate_checkpoint

    samples, description = labelled_samples(entry, search)
    # the Predictor's model is this checkpoint's, already prepared: no second copy
    result = evaluate_checkpoint(Checkpoint(predictor.model, predictor.config), samples, device=predictor.device,
                                 model=predictor.model, progress=progress)
    normalized = np.asarray([predictor.normalize(float(s)) for s in result.scores], dtype=np.float64)
    metrics = {k: float(v) for k, v in result.metrics.items() if np.isfinite(v)}
    return EvaluationView(
        key=key,
        description=description,
        metrics=metrics,
        scores=result.scores,
        normalized=normalized,
        labels=result.labels.astype(int),
        paths=list(result.paths),
        maps=result.maps,
        masks=result.masks,
        seconds=result.seconds,
        device=str(predictor.device),
    )


STORED_LABEL = "stored results of the test split (no data folder found)"
REPORT_FOLDER = "test"  # where `rdexpert train` tells `rdexpert test` to write its report


def stored_evaluation(key: str, entry: Entry) -> EvaluationView | None:
    """What ``rdexpert test`` kept in the checkpoint's ``test/`` folder, for when the test images are not here.

    The report holds the metrics of the whole split but the scores of only the images it drew overlays of;
    None when the checkpoint has no report.
    """
    report = entry.folder / REPORT_FOLDER if entry.folder else None
    if report is None or not (report / "metrics.json").is_file():
        return None
    from rdexpert.evaluation.evaluate import SCORES_NAME, read_report_scores
    from rdexpert.inference.calibration import Calibration

    metrics = {k: float(v) for k, v in read_json(report / "metrics.json").items()
               if isinstance(v, (int, float)) and np.isfinite(v)}
    rows = read_report_scores(report)
    scores = np.asarray([score for _, _, score in rows], dtype=np.float64)
    drawn = {p.name: p for p in (report / "overlays").glob("*.png")} if (report / "overlays").is_dir() else {}
    overlays = {}
    for i, (name, label, score) in enumerate(rows):  # the file name write_report gives an overlay
        found = drawn.get(f"{'defect' if label else 'good'}_{Path(name).stem}_score{score:.3f}.png")
        if found is not None:
            overlays[i] = str(found)
    normalize = Calibration.from_config(entry.config).normalize
    images = entry.info.metrics.get(entry.info.default_setting, {}).get("images")
    whole = f"all {images} test images" if images else "the whole test split"
    every_score = (report / SCORES_NAME).is_file()
    if every_score:
        shown = f"the histogram, table and image ROC show every image's stored score ({len(rows)})"
    else:
        shown = (f"the histogram and table show the {len(rows)} images `rdexpert test` drew overlays of "
                 "(no ROC: that needs every image's score; re-run `rdexpert test` to store them)")
    return EvaluationView(
        key=key,
        description=f"**{STORED_LABEL}**: the metrics below are of {whole}; {shown}",
        metrics=metrics,
        scores=scores,
        normalized=np.asarray([normalize(float(x)) for x in scores], dtype=np.float64),
        labels=np.asarray([label for _, label, _ in rows], dtype=int),
        paths=[name for name, _, _ in rows],
        maps=None,
        masks=None,
        seconds=0.0,
        device="",
        stored=True,
        every_score=every_score,
        overlays=overlays,
    )
