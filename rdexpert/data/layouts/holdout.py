"""The seeded split of normal training samples into (train, held-out).

Why this module exists: the decision threshold is calibrated, and models are
selected, on normal images that were not trained on and are never the test
set. Datasets without their own held-out set (all but MVTec AD 2) get one
here; the anomalib Folder layout uses the same split for its normal test images.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rdexpert.data.layouts.samples import Sample

__all__ = ["split_holdout"]


def split_holdout(
    samples: Sequence[Sample], fraction: float = 0.1, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministically split normal training samples into (train, holdout).

    The holdout (about ``fraction`` of the images, rounded) is for threshold
    calibration / model selection, never the test set: defective samples are
    refused.  When ``len(samples) >= 2`` and ``fraction > 0`` both parts keep at
    least one image; with fewer than 2 samples or ``fraction == 0`` the holdout
    is empty.  Both parts keep the input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    samples = list(samples)
    if any(s.label != 0 for s in samples):
        raise ValueError("split_holdout expects normal training images only (label 0); never split the test set.")
    n = len(samples)
    if n < 2 or fraction == 0.0:
        return samples, []
    k = int(round(n * fraction))
    k = min(max(k, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    hold = set(int(i) for i in perm[:k])
    train = [s for i, s in enumerate(samples) if i not in hold]
    holdout = [s for i, s in enumerate(samples) if i in hold]
    return train, holdout
