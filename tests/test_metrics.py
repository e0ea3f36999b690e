"""Tests for rdexpert.evaluation.metrics against slow, obviously-correct references,
sklearn, and hand-made cases with known answers."""

from __future__ import annotations

import math
import warnings
from collections import deque

import numpy as np
import pytest

from rdexpert.evaluation.metrics import aupro, average_precision, compute_metrics, f1_max, roc_auc

SEEDS = [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- #
# Slow references
# --------------------------------------------------------------------------- #
def ref_auroc(scores, labels):
    """Mann-Whitney: P(score_pos > score_neg) + 1/2 P(tie)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    pos, neg = s[y], s[~y]
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return (gt + 0.5 * eq) / (pos.size * neg.size)


def _counts(s, y, t):
    pred = s >= t
    return int(np.sum(pred & y)), int(np.sum(pred & ~y))


def ref_ap(scores, labels):
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    total = 0.0
    prev_recall = 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        tp, fp = _counts(s, y, t)
        recall = tp / y.sum()
        total += (recall - prev_recall) * tp / (tp + fp)
        prev_recall = recall
    return total


def ref_f1max(scores, labels):
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    best, best_t = -1.0, None
    for t in sorted(set(s.tolist()), reverse=True):
        tp, fp = _counts(s, y, t)
        fn = int(y.sum()) - tp
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best + 1e-15:
            best, best_t = f1, t
    return best, best_t


def ref_components(mask):
    """8-connected components by BFS (independent of cv2 / scipy)."""
    h, w = mask.shape
    lab = np.zeros((h, w), dtype=int)
    n = 0
    for i in range(h):
        for j in range(w):
            if mask[i, j] and lab[i, j] == 0:
                n += 1
                lab[i, j] = n
                q = deque([(i, j)])
                while q:
                    a, b = q.popleft()
                    for da in (-1, 0, 1):
                        for db in (-1, 0, 1):
                            u, v = a + da, b + db
                            if 0 <= u < h and 0 <= v < w and mask[u, v] and lab[u, v] == 0:
                                lab[u, v] = n
                                q.append((u, v))
    return [lab == k for k in range(1, n + 1)]


def ref_aupro(maps, masks, fpr_limit=0.3):
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    regions = []  # (image index, bool region mask)
    for i in range(maps.shape[0]):
        regions += [(i, r) for r in ref_components(masks[i])]
    normal_scores = maps[~masks]
    pts = [(0.0, 0.0)]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        fpr = float(np.mean(normal_scores >= t))
        pro = float(np.mean([np.mean(maps[i][r] >= t) for i, r in regions]))
        pts.append((fpr, pro))
    # integrate the polyline restricted to [0, fpr_limit]
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:  # clip this segment at fpr_limit
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


# --------------------------------------------------------------------------- #
# Random data helpers
# --------------------------------------------------------------------------- #
def random_scores(seed, n=60, quantise=False):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    y[0], y[1] = True, False  # both classes present
    s = rng.normal(size=n) + 1.0 * y
    if quantise:
        s = np.round(s * 2) / 2  # many ties, also across classes
    return s, y.astype(int)


def random_maps(seed, n=3, h=12, w=12, quantise=True):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for i in range(n):
        for _ in range(rng.integers(0, 4)):  # a few blobs of varied size per image
            r, c = rng.integers(0, h), rng.integers(0, w)
            rh, rw = rng.integers(1, 4), rng.integers(1, 5)
            masks[i, r : r + rh, c : c + rw] = 1
    masks[0, 0, 0] = 1  # at least one region
    masks[0, 0, 1:3] = 0  # ... and at least one normal pixel next to it
    maps = rng.random((n, h, w)) + 0.7 * masks
    if quantise:
        maps = np.round(maps * 8) / 8  # ties within regions and with normal pixels
    return maps.astype(np.float32), masks


# --------------------------------------------------------------------------- #
# (a) against the slow references
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("quantise", [False, True])
def test_scalar_metrics_match_reference(seed, quantise):
    s, y = random_scores(seed, quantise=quantise)
    assert roc_auc(s, y) == pytest.approx(ref_auroc(s, y), abs=1e-12)
    assert average_precision(s, y) == pytest.approx(ref_ap(s, y), abs=1e-12)
    f1, thr = f1_max(s, y)
    rf1, rthr = ref_f1max(s, y)
    assert f1 == pytest.approx(rf1, abs=1e-12)
    assert thr == rthr


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("quantise", [False, True])
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_aupro_matches_reference(seed, quantise, limit):
    maps, masks = random_maps(seed, quantise=quantise)
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(
        ref_aupro(maps, masks, limit), abs=1e-10
    )


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_compute_metrics_matches_individual_functions(seed):
    maps, masks = random_maps(seed, n=4)
    labels = masks.reshape(4, -1).any(1).astype(int)
    labels[:2] = [1, 0]
    scores = maps.reshape(4, -1).max(1) + np.arange(4) * 0.01
    out = compute_metrics(scores, labels, maps, masks)
    assert set(out) == {
        "image_auroc", "image_ap", "f1_max", "f1_threshold",
        "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro",
    }  # fmt: skip
    assert all(type(v) is float for v in out.values())
    assert out["image_auroc"] == pytest.approx(ref_auroc(scores, labels), abs=1e-12)
    assert out["image_ap"] == pytest.approx(ref_ap(scores, labels), abs=1e-12)
    assert (out["f1_max"], out["f1_threshold"]) == pytest.approx(ref_f1max(scores, labels))
    assert out["pixel_auroc"] == pytest.approx(ref_auroc(maps, masks), abs=1e-12)
    assert out["pixel_ap"] == pytest.approx(ref_ap(maps, masks), abs=1e-12)
    assert out["pixel_f1_max"] == pytest.approx(ref_f1max(maps, masks)[0], abs=1e-12)
    assert out["aupro"] == pytest.approx(ref_aupro(maps, masks), abs=1e-10)
    for k, v in out.items():
        if k != "f1_threshold":
            assert 0.0 <= v <= 1.0


# --------------------------------------------------------------------------- #
# (b) against sklearn
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("quantise", [False, True])
def test_against_sklearn(seed, quantise):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(100 + seed)
    n = 5000
    y = (rng.random(n) < 0.1).astype(int)
    s = rng.normal(size=n).astype(np.float32) + y
    if quantise:
        s = np.round(s * 4) / 4
    assert roc_auc(s, y) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(s, y) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    p, r, t = skm.precision_recall_curve(y, s)
    f1 = 2 * p * r / np.maximum(p + r, 1e-300)
    assert f1_max(s, y)[0] == pytest.approx(f1.max(), abs=1e-12)


# --------------------------------------------------------------------------- #
# (c) hand-made cases
# --------------------------------------------------------------------------- #
def test_perfect_separation():
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1])
    assert roc_auc(s, y) == 1.0
    assert average_precision(s, y) == 1.0
    assert f1_max(s, y) == (1.0, 0.8)


def test_inverted_and_constant():
    s = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    y = np.array([0, 0, 1, 1, 1])
    assert roc_auc(s, y) == 0.0
    c = np.full(5, 0.7)
    assert roc_auc(c, y) == 0.5
    assert average_precision(c, y) == pytest.approx(3 / 5)  # prevalence
    assert f1_max(c, y) == (pytest.approx(2 * 3 / (2 * 3 + 2)), 0.7)


def test_tie_counts_half():
    # one positive tied with one of two negatives: 1 win + 1 tie out of 2 pairs
    assert roc_auc([0.5, 0.5, 0.1], [1, 0, 0]) == 0.75


def test_f1_threshold_semantics():
    # at threshold 0.6 all of {0.9, 0.6, 0.6} are predicted defective (score >= thr): F1 = 1
    s = np.array([0.9, 0.6, 0.6, 0.2])
    y = np.array([1, 1, 1, 0])
    assert f1_max(s, y) == (1.0, 0.6)
    assert f1_max(s, y)[1] in s


def test_aupro_map_equal_mask_is_one():
    _, masks = random_maps(7, quantise=False)
    assert aupro(masks.astype(np.float32), masks) == 1.0
    out = compute_metrics([0.0, 1.0], [0, 1], masks[:2].astype(float), masks[:2])
    assert out["aupro"] == 1.0 and out["pixel_auroc"] == 1.0 and out["pixel_ap"] == 1.0


def test_aupro_constant_map():
    # single threshold: (0,0) -> (1,1); area to 0.3 is 0.3*0.3/2 -> normalised 0.15
    _, masks = random_maps(8)
    assert aupro(np.zeros(masks.shape), masks) == pytest.approx(0.15)
    assert roc_auc(np.zeros(masks.shape), masks) == 0.5


def test_aupro_is_per_region_not_per_pixel():
    # two images: a 1-pixel region fully detected, a 9-pixel region not detected
    masks = np.zeros((2, 8, 8), dtype=np.uint8)
    masks[0, 1, 1] = 1
    masks[1, 4:7, 4:7] = 1
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = 1.0
    # curve (0,0) -> (0,0.5) -> (1,1); PRO(0.3) = 0.65; area = 0.3*(0.5+0.65)/2
    assert aupro(maps, masks) == pytest.approx((0.5 + 0.65) / 2)
    # regions at the same place in different images stay separate
    masks2 = np.zeros((2, 8, 8), dtype=np.uint8)
    masks2[:, 2:4, 2:4] = 1
    maps2 = masks2 * np.array([1.0, 0.0])[:, None, None]
    assert aupro(maps2, masks2) == pytest.approx((0.5 + 0.65) / 2)


def test_aupro_uses_8_connectivity():
    # a single pixel touching a 2x2 block diagonally is ONE region of 5 pixels
    masks = np.zeros((1, 6, 6), dtype=np.uint8)
    masks[0, 0, 0] = 1
    masks[0, 1:3, 1:3] = 1
    maps = np.zeros(masks.shape)
    maps[0, 0, 0] = 1.0
    # 8-conn: curve (0,0)->(0,0.2)->(1,1): PRO(0.3)=0.44 -> (0.2+0.44)/2 = 0.32
    # (4-connectivity would give two regions and (0.5+0.65)/2 = 0.575)
    assert aupro(maps, masks) == pytest.approx(0.32)


def test_aupro_fpr_limit_interpolation_exact_hit():
    # FPR hits the limit exactly at a vertex: no interpolation needed, same result
    masks = np.zeros((1, 1, 11), dtype=np.uint8)
    masks[0, 0, :1] = 1  # 1 region pixel, 10 normal pixels
    maps = np.array([[[0.5, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]]], dtype=float)
    # t=1: fpr .3 pro 0 ; t=.5: fpr .3 pro 1 ; t=0: fpr 1 pro 1 -> area to .3 is 0
    assert aupro(maps, masks) == 0.0
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.7)


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    maps, masks = random_maps(3)
    s, y = np.array([0.2, 0.7, 0.7]), np.array([0, 1, 0])
    np_out = compute_metrics(s, y, maps, masks)
    t_out = compute_metrics(
        torch.tensor(s, requires_grad=True),
        torch.tensor(y),
        torch.tensor(maps).unsqueeze(1),  # (N, 1, H, W) is accepted too
        torch.tensor(masks).bool().unsqueeze(1),
    )
    assert t_out == np_out
    assert roc_auc(torch.tensor(s, dtype=torch.bfloat16), torch.tensor(y)) == pytest.approx(
        roc_auc(torch.tensor(s, dtype=torch.bfloat16).float().numpy(), y)
    )


def test_any_shape_is_flattened():
    s, y = random_scores(4)
    assert roc_auc(s.reshape(6, 10), y.reshape(6, 10)) == roc_auc(s, y)
    assert roc_auc(s, y[:, None]) == roc_auc(s, y)


# --------------------------------------------------------------------------- #
# Errors and edge cases
# --------------------------------------------------------------------------- #
def test_single_class_errors():
    with pytest.raises(ValueError, match=r"only one class.*all 3 are 0"):
        roc_auc([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match=r"only one class.*all 3 are 1"):
        roc_auc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match=r"Average precision.*only one class.*all 2 are 0"):
        average_precision([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match=r"only one class"):
        average_precision([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match=r"F1-max.*only one class"):
        f1_max([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match=r"only one class present in image_labels"):
        compute_metrics([0.1, 0.2], [1, 1])


def test_shape_mismatch_errors():
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 4, 5\)"):
        aupro(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(3, 4, 4\)"):
        compute_metrics([0.1, 0.9], [0, 1], np.zeros((2, 4, 4)), np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])


def test_other_input_errors():
    with pytest.raises(ValueError, match="no defective pixel"):
        aupro(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="no normal pixel"):
        aupro(np.zeros((1, 4, 4)), np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="binary"):
        roc_auc([0.1, 0.2], [0, 255])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(np.zeros((1, 2, 2)), np.eye(2)[None], fpr_limit=0.0)
    with pytest.raises(ValueError, match="both anomaly_maps and gt_masks"):
        compute_metrics([0.1, 0.9], [0, 1], anomaly_maps=np.zeros((2, 4, 4)))


def test_all_zero_masks_give_nan_pixel_metrics_with_warning():
    with pytest.warns(UserWarning, match="no defective pixel"):
        out = compute_metrics([0.1, 0.9], [0, 1], np.random.rand(2, 4, 4), np.zeros((2, 4, 4)))
    assert out["image_auroc"] == 1.0
    for k in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"):
        assert math.isnan(out[k])


def test_image_only_has_no_pixel_keys():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_metrics([0.1, 0.9, 0.4], [0, 1, 0])
    assert set(out) == {"image_auroc", "image_ap", "f1_max", "f1_threshold"}


def test_warns_when_map_count_differs_from_score_count():
    maps, masks = random_maps(5)  # 3 maps
    with pytest.warns(UserWarning, match="3 anomaly maps but 4 image scores"):
        compute_metrics([0.1, 0.9, 0.2, 0.3], [0, 1, 0, 0], maps, masks)
