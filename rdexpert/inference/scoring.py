"""Running a model over batches of images: the one loop behind prediction, evaluation and calibration.

Every batch runs under ``torch.inference_mode`` and, on CUDA, bf16 autocast
(:mod:`rdexpert.runtime`); the outputs come back as float32 numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from rdexpert.data import ContentBox, ImageDataset
from rdexpert.model import ExpertTeacherStudent
from rdexpert.runtime import autocast


@dataclass
class ScoredBatch:
    """One batch's results, with the batch itself (``ImageDataset`` batches also carry mask, label, path)."""

    batch: dict | torch.Tensor
    scores: np.ndarray  # (B,) image scores (max of the fused map over each picture's content box)
    maps: np.ndarray  # (B, S, S) fused, blurred anomaly maps
    scale_maps: np.ndarray | None = None  # (B, 3, S, S) per-scale maps, when asked for
    pooled_reference: np.ndarray | None = None  # (B, D) ``pool_reference`` of the reference features, when asked for


def sample_batches(samples: list, image_size: int, batch_size: int = 8, *, fit: str) -> DataLoader:
    """Labelled samples as fitted batches (``ImageDataset``; ``fit``: the model's ``input_fit``), in order."""
    return DataLoader(ImageDataset(samples, image_size, fit=fit), batch_size=batch_size)


def content_scores(maps: np.ndarray, boxes=None) -> np.ndarray:
    """Image scores: the max of each (S, S) map inside its picture's box (rows ``top, left, height, width`` of
    :func:`rdexpert.data.content_box`), never over padding; no boxes: over the whole map.

    The one place an image score is taken from a map (evaluation, calibration, :class:`rdexpert.inference.predictor.Predictor`).
    """
    maps = np.asarray(maps)
    if boxes is None:
        return maps.reshape(len(maps), -1).max(1)
    return np.array([ContentBox.of(box).crop(m).max() for m, box in zip(maps, boxes)], dtype=maps.dtype)


def score_images(
    model: ExpertTeacherStudent,
    batches: Iterable[dict | torch.Tensor],
    device: torch.device | str,
    reference: str | None = None,
    gate: str = "gated",
    scales: bool = False,
    pool_reference: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
) -> Iterator[ScoredBatch]:
    """Score each batch: a (B, 3, S, S) tensor in [0, 1], or a dict holding one under ``"image"`` (and, for padded
    pictures, their content boxes under ``"box"``, as ``ImageDataset`` batches do: the score looks there only).

    ``reference`` and ``gate`` are the inference-time switches of docs/design.md §3.4;
    ``scales=True`` also returns the per-scale maps; ``pool_reference`` (e.g. :func:`rdexpert.inference.ood.pooled_features`)
    reduces the reference features of the same forward to one vector per image.
    """
    device = torch.device(device)
    for batch in batches:
        images = batch["image"] if isinstance(batch, dict) else batch
        with torch.inference_mode():  # left before yielding: the caller's code runs in its own grad mode
            with autocast(device, model.config.precision):
                output = model(images.to(device), reference=reference, gate=gate)
                maps = output.maps
            fused = maps.fused[:, 0].float().cpu().numpy()
            result = ScoredBatch(
                batch=batch,
                scores=content_scores(fused, batch.get("box") if isinstance(batch, dict) else None),
                maps=fused,
                scale_maps=torch.cat(maps.scales, dim=1).float().cpu().numpy() if scales else None,
                pooled_reference=pool_reference(output.reference).float().cpu().numpy() if pool_reference else None,
            )
        yield result
