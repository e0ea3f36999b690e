"""Score a trained model on a labelled test split: metrics, a markdown table, overlay images."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from rdexpert.checkpoint.io import atomic_write, write_json
from rdexpert.data import ContentBox, fit_image, list_samples, load_image
from rdexpert.evaluation.metrics import compute_metrics, metrics_table
from rdexpert.evaluation.plots import overlay, save_png
from rdexpert.inference.scoring import sample_batches, score_images
from rdexpert.model import ExpertTeacherStudent


@dataclass
class Evaluation:
    """Scores, maps and metrics of one model over one test split.

    ``maps`` and ``masks`` hold each picture's content region only (:func:`content_stack`): the whole S x S
    input for a "squash" model, the picture without its padding for a "pad" one.
    """

    metrics: dict[str, float]
    scores: np.ndarray
    labels: np.ndarray
    maps: np.ndarray  # (N, h, w) fused anomaly maps, content region
    masks: np.ndarray  # (N, h, w) bool ground truth, content region
    paths: list[str]
    seconds: float
    boxes: np.ndarray | None = None  # (N, 4) content boxes (top, left, height, width) in the S x S input
    image_size: int | None = None  # S
    input_fit: str = "squash"  # how the images were fitted to S x S (ModelConfig.input_fit)


def content_stack(arrays: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, S, S) maps or masks cut to each picture's content box, stacked: what every pixel metric is computed on.

    Pictures of one shape (a "squash" model, or test images of one size) stack as they are. Pictures of
    different shapes are each resized (bilinear; masks then ``>= 0.5``) to the most common content shape, so
    they stack: still no padding pixel counts, but a resized picture's pixels weigh a little more or less.
    """
    crops = [ContentBox.of(box).crop(a) for a, box in zip(arrays, boxes)]
    shapes = [c.shape for c in crops]
    target = max(set(shapes), key=shapes.count)
    if all(shape == target for shape in shapes):
        return np.stack(crops)
    height, width = target

    def resized(crop: np.ndarray) -> np.ndarray:
        if crop.shape == target:
            return crop
        out = cv2.resize(crop.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return out >= 0.5 if crop.dtype == bool else out.astype(crop.dtype)

    return np.stack([resized(c) for c in crops])


def evaluate(
    model: ExpertTeacherStudent,
    samples: list,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    reference: str | None = None,
    gate: str = "gated",
    progress: bool = True,
) -> Evaluation:
    """Run the model over ``samples`` and compute every metric of docs/design.md §4, on each picture's content only."""
    device = torch.device(device)
    model = model.to(device).eval()
    size, fit = model.config.image_size, model.config.input_fit
    loader = sample_batches(samples, size, batch_size, fit=fit)
    scores, labels, maps, masks, paths, boxes = [], [], [], [], [], []
    began = time.perf_counter()
    batches = tqdm(loader, desc="test", disable=not progress, unit="batch")
    for scored in score_images(model, batches, device, reference, gate):
        batch = scored.batch
        scores.append(scored.scores)
        maps.append(scored.maps)
        masks.append(batch["mask"][:, 0].numpy() > 0.5)
        labels.append(batch["label"].numpy())
        boxes.append(batch["box"].numpy())
        paths += batch["path"]
    seconds = time.perf_counter() - began
    boxes = np.concatenate(boxes)
    result = Evaluation(
        metrics={},
        scores=np.concatenate(scores),
        labels=np.concatenate(labels),
        maps=content_stack(np.concatenate(maps), boxes),
        masks=content_stack(np.concatenate(masks), boxes),
        paths=paths,
        seconds=seconds,
        boxes=boxes,
        image_size=size,
        input_fit=fit,
    )
    # defective images without a mask (plain folders) count for image metrics only
    has_mask = np.array([s.mask_path is not None or s.label == 0 for s in samples])
    result.metrics = compute_metrics(
        result.scores, result.labels, result.maps[has_mask], result.masks[has_mask].astype(np.uint8)
    )
    return result


def write_report(result: Evaluation, out: str | Path, name: str, threshold: float | None, overlays: int = 6) -> Path:
    """metrics.json, metrics.md, scores.csv (every image's label and raw score: enough to redraw the image ROC and
    histogram without the images) and overlay PNGs for the highest-scoring and a few normal images."""
    out = Path(out)
    write_json(out / "metrics.json", {k: float(v) for k, v in result.metrics.items()})
    (out / "metrics.md").write_text(metrics_table({name: result.metrics}))
    rows = "".join(f"{_csv_name(p)},{int(label)},{float(score):.6f}\n"
                   for p, label, score in zip(result.paths, result.labels, result.scores))
    atomic_write(out / SCORES_NAME, lambda tmp: Path(tmp).write_text("image,label,score\n" + rows, encoding="utf-8"))
    vmin, vmax = float(np.percentile(result.maps, 1)), float(np.percentile(result.maps, 99.9))
    order = np.argsort(-result.scores)
    defective = [i for i in order if result.labels[i] == 1][: overlays - overlays // 3]
    normal = [i for i in order[::-1] if result.labels[i] == 0][: overlays // 3]
    for i in defective + normal:
        image = _content_picture(result, i)
        picture = overlay(image, result.maps[i], vmin, vmax, threshold)
        if result.masks[i].any():  # ground truth in green beside the prediction
            gt = image.copy()
            gt[result.masks[i]] = (0.5 * gt[result.masks[i]] + [0, 127, 0]).astype(np.uint8)
            picture = np.concatenate([gt, picture], axis=1)
        kind = "defect" if result.labels[i] else "good"
        save_png(out / "overlays" / f"{kind}_{Path(result.paths[i]).stem}_score{result.scores[i]:.3f}.png", picture)
    return out


def _content_picture(result: Evaluation, i: int) -> np.ndarray:
    """Image ``i`` as the network saw it, its content region only, at the shape of ``result.maps[i]``."""
    size = result.image_size or result.maps.shape[-1]
    image = fit_image(load_image(result.paths[i]), size, result.input_fit)
    if result.boxes is not None:
        image = ContentBox.of(result.boxes[i]).crop(image)
    height, width = result.maps.shape[1:]
    if image.shape[:2] != (height, width):  # pictures of several shapes (content_stack)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


_OVERLAY_NAME = re.compile(r"^(good|defect)_(.+)_score(-?\d+(?:\.\d+)?)$")
SCORES_NAME = "scores.csv"


def _csv_name(path) -> str:
    """The image as ``<parent folder>/<file>`` (e.g. ``defect/000.png``), commas and newlines made harmless."""
    name = "/".join(Path(path).parts[-2:])
    return name.replace(",", "_").replace("\n", "_")


def read_report_scores(out: str | Path) -> list[tuple[str, int, float]]:
    """(image name, label, raw score) of every test image :func:`write_report` scored (``scores.csv``), or, for a
    report written before that file existed, of the images it drew overlays of (read from their file names).

    All a checkpoint keeps of its per-image test results, for places without the data (the app on a Space).
    """
    table = Path(out) / SCORES_NAME
    if table.is_file():
        lines = table.read_text(encoding="utf-8").splitlines()[1:]
        return [(name, int(label), float(score)) for name, label, score in (line.rsplit(",", 2) for line in lines if line)]
    found = []
    for path in sorted((Path(out) / "overlays").glob("*.png")):
        match = _OVERLAY_NAME.match(path.stem)
        if match:
            kind, name, score = match.groups()
            found.append((name, int(kind == "defect"), float(score)))
    return found


def evaluate_split(model, data_root, category, device="cpu", layout="auto", **kwargs) -> Evaluation:
    """Evaluate on the labelled test split of a dataset folder."""
    return evaluate(model, list_samples(data_root, category, "test", layout=layout), device=device, **kwargs)
