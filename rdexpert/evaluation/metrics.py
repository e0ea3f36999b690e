"""Evaluation metrics for anomaly detection (standard MVTec AD definitions).

Every metric here is computed *exactly* (no threshold grid, no pixel
subsampling) from one descending sort of the scores followed by cumulative
sums evaluated at the last position of each group of tied scores.  That makes
the results match ``sklearn.metrics`` (and the MVTec AD reference AUPRO code)
while a full category (~120 maps of 256x256, ~8M pixels) takes only a few
seconds on a CPU.

Public API
----------
* :func:`roc_auc` – ROC AUC, tie-aware (identical to ``roc_auc_score``).
* :func:`average_precision` – AP as ``sum_n (R_n - R_{n-1}) P_n``.
* :func:`f1_max` – best F1 over all thresholds and the threshold reaching it.
* :func:`aupro` – normalised area under the PRO curve up to an FPR limit.
* :func:`compute_metrics` – all image-level (and optionally pixel-level)
  metrics in one dict of plain floats in ``[0, 1]``.
* :func:`roc_curve` – the ROC points (FPR, TPR) behind :func:`roc_auc`.
* :data:`METRIC_NAMES` and :func:`metrics_table` – the reported metrics, their
  display names, and the one markdown table every report uses.

Scores / maps and labels / masks may be numpy arrays or torch tensors.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "METRIC_NAMES", "roc_auc", "roc_curve", "average_precision", "f1_max", "aupro", "compute_metrics", "metrics_table",
]

# The metrics every report shows, in this order, with their display names.
METRIC_NAMES = {
    "image_auroc": "I-AUROC",
    "pixel_auroc": "P-AUROC",
    "aupro": "AUPRO@0.3",
    "image_ap": "image AP",
    "pixel_ap": "pixel AP",
    "f1_max": "image F1-max",
}


# --------------------------------------------------------------------------- #
# Input conversion / validation
# --------------------------------------------------------------------------- #
def _to_numpy(x: Any) -> np.ndarray:
    """Convert numpy arrays, torch tensors (any device/dtype) or sequences to numpy."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        try:
            x = x.numpy()
        except TypeError:  # e.g. bfloat16 has no numpy equivalent
            x = x.float().numpy()
    return np.asarray(x)


def _as_scores(x: Any, name: str = "scores") -> np.ndarray:
    """Return a floating array (original precision kept so ties match sklearn)."""
    a = _to_numpy(x)
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    elif not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if np.isnan(a).any():
        raise ValueError(f"{name} contain NaN values; cannot rank them")
    return a


def _as_binary(x: Any, name: str = "labels") -> np.ndarray:
    """Return a boolean array; values other than 0/1 are rejected (binarise first)."""
    a = _to_numpy(x)
    if a.dtype == np.bool_:
        return a
    pos = a == 1
    if not np.all(pos | (a == 0)):
        bad = np.unique(a[~(pos | (a == 0))])[:5]
        raise ValueError(
            f"{name} must be binary (0/1 or bool); found other values such as {bad.tolist()}"
        )
    return pos


def _flat_pair(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _as_scores(scores)
    y = _as_binary(labels)
    if s.size != y.size:
        raise ValueError(
            f"scores and labels have different numbers of elements: "
            f"scores shape {tuple(s.shape)} vs labels shape {tuple(y.shape)}"
        )
    if s.size == 0:
        raise ValueError("scores and labels are empty")
    return s.reshape(-1), y.reshape(-1)


def _check_both_classes(n_pos: int, n_neg: int, what: str, kind: str = "labels") -> None:
    if n_pos == 0:
        raise ValueError(
            f"{what} is undefined: only one class present in {kind} "
            f"(all {n_neg} are 0 / normal, none is 1 / defective)"
        )
    if n_neg == 0:
        raise ValueError(
            f"{what} is undefined: only one class present in {kind} "
            f"(all {n_pos} are 1 / defective, none is 0 / normal)"
        )


# --------------------------------------------------------------------------- #
# Core: one descending sort, cumulative sums at tie-group ends
# --------------------------------------------------------------------------- #
class _Ranking(NamedTuple):
    """Descending order of the scores and the last index of each tie group."""

    order: np.ndarray  # indices sorting the flat scores in descending order
    ends: np.ndarray  # positions (in sorted order) of the last element of each distinct value
    thresholds: np.ndarray  # distinct score values, descending


def _rank(scores: np.ndarray) -> _Ranking:
    # argsort ascending then reverse: ties are grouped anyway, their order is irrelevant
    order = np.argsort(scores, kind="quicksort")[::-1]
    s = scores[order]
    ends = np.flatnonzero(s[1:] != s[:-1])
    ends = np.append(ends, s.size - 1)
    return _Ranking(order, ends, s[ends])


class _Curve(NamedTuple):
    """Cumulative true / false positive counts at each distinct threshold (descending)."""

    tps: np.ndarray  # float64, # positives with score >= threshold
    fps: np.ndarray  # float64, # negatives with score >= threshold
    thresholds: np.ndarray
    n_pos: int
    n_neg: int


def _curve(labels: np.ndarray, ranking: _Ranking) -> _Curve:
    cum = np.cumsum(labels[ranking.order], dtype=np.int64)[ranking.ends]
    tps = cum.astype(np.float64)
    fps = (ranking.ends + 1 - cum).astype(np.float64)
    n_pos = int(cum[-1])
    return _Curve(tps, fps, ranking.thresholds, n_pos, int(labels.size) - n_pos)


def _auroc_from_curve(c: _Curve) -> float:
    # trapezoid over the ROC points, starting at (0, 0); counts are exact integers,
    # so a tie group of p positives and n negatives contributes a diagonal (1/2 credit)
    tps = np.concatenate(([0.0], c.tps))
    fps = np.concatenate(([0.0], c.fps))
    area = np.sum(np.diff(fps) * (tps[1:] + tps[:-1])) * 0.5
    return float(area / (float(c.n_pos) * float(c.n_neg)))


def _ap_from_curve(c: _Curve) -> float:
    precision = c.tps / (c.tps + c.fps)
    recall_gain = np.diff(c.tps, prepend=0.0) / c.n_pos
    return float(np.sum(recall_gain * precision))


def _f1_from_curve(c: _Curve) -> tuple[float, float]:
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P)
    f1 = 2.0 * c.tps / (c.tps + c.fps + c.n_pos)
    i = int(np.argmax(f1))  # first maximum = highest threshold among equally good ones
    return float(f1[i]), float(c.thresholds[i])


# --------------------------------------------------------------------------- #
# Public scalar metrics
# --------------------------------------------------------------------------- #
def roc_auc(scores: Any, labels: Any) -> float:
    """ROC AUC of ``scores`` vs binary ``labels`` (1 = defective); inputs are flattened.

    Ties are handled like ``sklearn.metrics.roc_auc_score`` (a tie between a
    positive and a negative counts 1/2), so results are directly comparable
    with published numbers.  Raises ValueError if only one class is present.
    """
    s, y = _flat_pair(scores, labels)
    n_pos = int(np.count_nonzero(y))
    _check_both_classes(n_pos, y.size - n_pos, "ROC AUC")
    return _auroc_from_curve(_curve(y, _rank(s)))


def roc_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)``: (0, 0), then one point per distinct score, highest first; tie-aware.

    The trapezoid area under these points is :func:`roc_auc`. A class that is
    absent gives a rate of 0 throughout instead of an error.
    """
    s, y = _flat_pair(scores, labels)
    c = _curve(y, _rank(s))
    fpr = np.concatenate(([0.0], c.fps / max(c.n_neg, 1)))
    tpr = np.concatenate(([0.0], c.tps / max(c.n_pos, 1)))
    return fpr, tpr


def average_precision(scores: Any, labels: Any) -> float:
    """Average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

    Same definition as ``sklearn.metrics.average_precision_score`` (no
    interpolation of the PR curve), which is what AD papers report as AP.
    Raises ValueError if only one class is present.
    """
    s, y = _flat_pair(scores, labels)
    n_pos = int(np.count_nonzero(y))
    _check_both_classes(n_pos, y.size - n_pos, "Average precision")
    return _ap_from_curve(_curve(y, _rank(s)))


def f1_max(scores: Any, labels: Any) -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold reaching it: ``(f1, threshold)``.

    A sample is predicted defective when ``score >= threshold``; the threshold
    is one of the observed scores (the highest one if several give the same
    F1), so it can be used directly as an operating point.  Raises ValueError
    if there is no positive label (F1 would be 0 for every threshold).
    """
    s, y = _flat_pair(scores, labels)
    if not y.any():
        raise ValueError(
            f"F1-max is undefined: only one class present in labels "
            f"(all {y.size} are 0 / normal, none is 1 / defective)"
        )
    return _f1_from_curve(_curve(y, _rank(s)))


# --------------------------------------------------------------------------- #
# AUPRO
# --------------------------------------------------------------------------- #
def _label_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """8-connected components of a 2-D bool mask -> (n_regions, labels 0..n)."""
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - fallback when OpenCV is absent
        try:
            from scipy import ndimage  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ImportError(
                "aupro needs opencv-python(-headless) or scipy for connected components"
            ) from exc
        lab, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        return int(n), lab
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return int(n) - 1, lab  # cv2 counts the background as a label


def _as_map_stack(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate (N,H,W) maps/masks (also (H,W) or (N,1,H,W)); return scores and bool masks."""
    m = _as_scores(maps, "anomaly_maps")
    g = _as_binary(masks, "gt_masks")
    if m.shape != g.shape:
        raise ValueError(
            f"anomaly_maps and gt_masks must have the same shape: "
            f"anomaly_maps shape {tuple(m.shape)} vs gt_masks shape {tuple(g.shape)}"
        )
    if m.ndim == 4 and m.shape[1] == 1:
        m, g = m[:, 0], g[:, 0]
    elif m.ndim == 2:
        m, g = m[None], g[None]
    if m.ndim != 3:
        raise ValueError(
            f"anomaly_maps / gt_masks must be (N, H, W) (or (H, W), (N, 1, H, W)); "
            f"got shape {tuple(m.shape)}"
        )
    if m.size == 0:
        raise ValueError("anomaly_maps and gt_masks are empty")
    return m, g


def _region_weights(masks: np.ndarray) -> np.ndarray:
    """Per-pixel PRO weight 1 / (region_size * n_regions); 0 on normal pixels (flat, float64).

    Regions are 8-connected components, labelled per image so that regions of
    different images never merge.
    """
    sizes: list[np.ndarray] = []
    labels = np.zeros(masks.shape, dtype=np.int64)
    offset = 0
    for i in range(masks.shape[0]):
        if not masks[i].any():
            continue
        n, lab = _label_components(masks[i])
        lab = lab.astype(np.int64)
        labels[i] = np.where(lab > 0, lab + offset, 0)
        sizes.append(np.bincount(lab.ravel(), minlength=n + 1)[1:])
        offset += n
    if offset == 0:
        raise ValueError("AUPRO is undefined: gt_masks contain no defective pixel (no region)")
    region_size = np.concatenate(([np.inf], np.concatenate(sizes).astype(np.float64)))
    per_region = 1.0 / (region_size * offset)  # index 0 -> 0.0
    return per_region[labels.ravel()]


def _aupro_from_ranking(
    weights: np.ndarray, normal: np.ndarray, ranking: _Ranking, fpr_limit: float
) -> float:
    n_normal = int(np.count_nonzero(normal))
    if n_normal == 0:
        raise ValueError("AUPRO is undefined: gt_masks contain no normal pixel (FPR undefined)")
    n_fp = np.cumsum(normal[ranking.order], dtype=np.int64)[ranking.ends]
    pro = np.cumsum(weights[ranking.order], dtype=np.float64)[ranking.ends]
    # once every defective pixel is above the threshold PRO is exactly 1 (the float
    # sum of the 1/(size*R) weights may be off by an ulp): snap it so a perfect map gives 1.0
    all_defects_in = (ranking.ends + 1 - n_fp) == normal.size - n_normal
    pro = np.where(all_defects_in, 1.0, np.clip(pro, 0.0, 1.0))
    fpr = np.concatenate(([0.0], n_fp / n_normal))
    pro = np.concatenate(([0.0], pro))
    # keep the points with fpr <= limit, then close the curve at exactly fpr == limit
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:k], pro[:k]
    if k < fpr.size:  # fpr[k-1] <= limit < fpr[k]: interpolate on that segment
        t = (fpr_limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        x = np.append(x, fpr_limit)
        y = np.append(y, pro[k - 1] + t * (pro[k] - pro[k - 1]))
    area = np.sum(np.diff(x) * (y[1:] + y[:-1])) * 0.5
    return float(area / fpr_limit)


def aupro(anomaly_maps: Any, gt_masks: Any, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``fpr_limit``.

    MVTec AD definition: PRO at a threshold is the mean, over all 8-connected
    ground-truth regions of all images, of the fraction of the region's pixels
    scoring ``>= threshold``; FPR is the fraction of all normal pixels above it.
    The curve is integrated (trapezoid) from FPR 0 to ``fpr_limit``, with the
    PRO at exactly ``fpr_limit`` linearly interpolated, and divided by
    ``fpr_limit`` so that a perfect detector scores 1.0.  Unlike pixel AUROC it
    weighs small defects as much as large ones.

    ``anomaly_maps``: (N, H, W) floats; ``gt_masks``: (N, H, W) in {0, 1}.
    """
    if not (0.0 < float(fpr_limit) <= 1.0):
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    m, g = _as_map_stack(anomaly_maps, gt_masks)
    weights = _region_weights(g)
    normal = ~g.reshape(-1)
    if not normal.any():
        raise ValueError("AUPRO is undefined: gt_masks contain no normal pixel (FPR undefined)")
    return _aupro_from_ranking(weights, normal, _rank(m.reshape(-1)), float(fpr_limit))


# --------------------------------------------------------------------------- #
# All metrics at once
# --------------------------------------------------------------------------- #
def compute_metrics(
    image_scores: Any,
    image_labels: Any,
    anomaly_maps: Any = None,
    gt_masks: Any = None,
) -> dict[str, float]:
    """All evaluation metrics as plain floats in [0, 1] (fractions, not percent).

    Always: ``image_auroc, image_ap, f1_max, f1_threshold``.  When both
    ``anomaly_maps`` and ``gt_masks`` are given, also ``pixel_auroc, pixel_ap,
    pixel_f1_max, aupro``; the pixels are sorted only once for all four.  If
    the masks contain a single class (e.g. no defective pixel at all) the
    pixel metrics are NaN and a warning is emitted instead of failing the
    whole evaluation.  ``f1_threshold`` is a raw image score, not a fraction.
    """
    s, y = _flat_pair(image_scores, image_labels)
    n_pos = int(np.count_nonzero(y))
    _check_both_classes(n_pos, y.size - n_pos, "Image AUROC/AP", "image_labels")
    c = _curve(y, _rank(s))
    f1, thr = _f1_from_curve(c)
    out: dict[str, float] = {
        "image_auroc": _auroc_from_curve(c),
        "image_ap": _ap_from_curve(c),
        "f1_max": f1,
        "f1_threshold": thr,
    }

    if anomaly_maps is None and gt_masks is None:
        return out
    if anomaly_maps is None or gt_masks is None:
        raise ValueError("pixel metrics need both anomaly_maps and gt_masks (got only one)")

    m, g = _as_map_stack(anomaly_maps, gt_masks)
    if m.shape[0] != s.size:
        warnings.warn(
            f"{m.shape[0]} anomaly maps but {s.size} image scores; "
            "pixel and image metrics are computed on different sets",
            stacklevel=2,
        )
    gf = g.reshape(-1)
    n_pix_pos = int(np.count_nonzero(gf))
    if n_pix_pos == 0 or n_pix_pos == gf.size:
        which = "no defective pixel" if n_pix_pos == 0 else "no normal pixel"
        warnings.warn(
            f"gt_masks contain {which}; pixel metrics are undefined and set to NaN",
            stacklevel=2,
        )
        out.update(pixel_auroc=math.nan, pixel_ap=math.nan, pixel_f1_max=math.nan, aupro=math.nan)
        return out

    ranking = _rank(m.reshape(-1))
    pc = _curve(gf, ranking)
    out["pixel_auroc"] = _auroc_from_curve(pc)
    out["pixel_ap"] = _ap_from_curve(pc)
    out["pixel_f1_max"] = _f1_from_curve(pc)[0]
    out["aupro"] = _aupro_from_ranking(_region_weights(g), ~gf, ranking, 0.3)
    return out


# --------------------------------------------------------------------------- #
# Reporting
# --------------------------------------------------------------------------- #
def _percent(value: Any) -> str:
    return "–" if value is None or value != value else f"{100 * float(value):.1f}"


def metrics_table(
    rows: dict[str, dict[str, float]], first_column: str = "model", extra_columns: dict[str, str] | None = None
) -> str:
    """A markdown table: one row per name, metrics in percent in the order of :data:`METRIC_NAMES`.

    Only metrics that some row has get a column; a missing or NaN value shows as
    "–". ``extra_columns`` (``{key: header}``) adds columns after the name, shown
    as stored ("?" when absent). The empty string when no row has any metric.
    """
    names = [k for k in METRIC_NAMES if any(k in row for row in rows.values())]
    if not names:
        return ""
    extra = extra_columns or {}
    header = [first_column, *extra.values(), *(METRIC_NAMES[k] for k in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        cells = [name, *(str(row.get(k, "?")) for k in extra), *(_percent(row.get(k)) for k in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
