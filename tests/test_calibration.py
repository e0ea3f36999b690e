"""Calibration: the threshold rule on normal scores, the 0..1 normalisation, and edge cases."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from rdexpert.inference.calibration import Calibration


def test_calibration_rule_and_normalisation():
    scores = [0.20, 0.22, 0.25, 0.30, 0.24]
    c = Calibration.from_normal_scores(scores)
    assert c.low == 0.20
    assert c.threshold == pytest.approx(np.quantile(scores, 0.99) + 0.25 * (np.quantile(scores, 0.99) - 0.20))
    assert c.normalize(c.low) == 0.0 and c.normalize(c.threshold) == pytest.approx(0.5)
    assert c.normalize(-5.0) == 0.0 and c.normalize(99.0) > c.normalize(9.0) > 1.0  # monotone, never clipped above
    values = np.linspace(0, 1, 50, dtype=np.float32)
    normalized = c.normalize(values)
    assert normalized.dtype == np.float32 and np.all(np.diff(normalized) >= 0)
    assert c.label(c.threshold) == 1 and list(c.label(np.array([0.0, 10.0]))) == [0, 1]
    again = Calibration.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c


def test_calibration_false_alarm_rate_on_new_normal_images():
    """Expected share of new normal images above the threshold, for Gaussian normal scores (documented figures)."""
    rng = np.random.default_rng(0)
    gauss = NormalDist()

    def false_alarms(n: int, margin: float) -> float:
        return float(np.mean([1 - gauss.cdf(Calibration.from_normal_scores(rng.normal(0, 1, n), margin=margin).threshold)
                              for _ in range(3000)]))

    assert false_alarms(5, 0.25) < 0.10 < false_alarms(5, 0.0)  # the bare maximum of 5 flags 1 in 6
    assert false_alarms(10, 0.25) < 0.04
    assert false_alarms(30, 0.25) < 0.01


def test_calibration_edge_cases():
    one = Calibration.from_normal_scores([0.4])
    assert one.low < one.threshold and one.normalize(one.threshold) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one"):
        Calibration.from_normal_scores([])
    with pytest.raises(ValueError, match="NaN"):
        Calibration.from_normal_scores([0.1, float("nan")])
    moved = one.with_threshold(one.low - 1.0)  # below every normal score: the scale keeps its width
    assert moved.normalize(moved.threshold) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="calibrated threshold"):
        Calibration.from_dict({})
    first_format = Calibration.from_dict({"threshold": 0.5, "holdout_scores": [0.2, 0.3]})
    assert first_format.low == 0.2




def test_threshold_sits_in_the_gap_between_normal_and_synthetic_anomaly_scores():
    normal = [1.36, 1.44, 1.49, 1.53, 1.48]
    synthetic = [1.40] + list(np.linspace(2.0, 3.0, 39))  # one near-invisible blend among 40
    c = Calibration.from_normal_and_synthetic(normal, synthetic)
    gap_high = float(np.quantile(synthetic, 0.05))  # 0.05 quantile: the faint one does not pull it down
    assert gap_high > 1.9
    assert c.threshold == pytest.approx((1.53 + gap_high) / 2)
    assert c.method == "normal images + synthetic anomalies"
    e = c.estimates()
    assert (e["normal_images"], e["normal_flagged"], e["synthetic_anomalies"], e["synthetic_missed"]) == (5, 0, 40, 1)
    assert e["synthetic_miss_rate"] == pytest.approx(1 / 40)
    assert 0.4 < e["false_positive_rate_upper95"] < 0.5  # 0 of 5 seen: the 95 % Wilson bound is still ~43 %
    again = Calibration.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and again.estimates() == e


def test_overlapping_synthetic_scores_keep_the_normal_rule_and_say_so():
    normal = [1.0, 1.1, 1.2, 1.3]
    c = Calibration.from_normal_and_synthetic(normal, [1.05, 1.15, 1.25, 2.0])
    assert c.threshold == Calibration.from_normal_scores(normal).threshold
    assert "no gap" in c.rule and c.estimates()["synthetic_missed"] == 3


def test_faint_synthetic_anomalies_are_estimated_apart_and_a_high_miss_rate_is_said_in_plain_words():
    """Tire's calibration estimated 22 of 42 anomalies missed and its test split missed 87 of 87. The
    faint (subtle) anomalies are estimated apart, and a model that misses most of them says so."""
    normal = [1.0, 1.1, 1.2, 1.3]
    easy = list(np.linspace(2.0, 3.0, 40))
    subtle = [1.15] * 30 + [2.5] * 10
    c = Calibration.from_normal_and_synthetic(normal, easy, faint_scores=subtle)
    assert c.threshold == Calibration.from_normal_and_synthetic(normal, easy).threshold  # they never move it
    e = c.estimates()
    assert (e["synthetic_missed"], e["faint_anomalies"], e["faint_missed"]) == (0, 40, 30)
    assert "30 of 40 faint ones" in c.summary() and "expect this model to miss many real defects" in c.summary()
    assert Calibration.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    fine = Calibration.from_normal_and_synthetic(normal, easy, faint_scores=[2.5] * 40)
    assert "Warning" not in fine.summary()
