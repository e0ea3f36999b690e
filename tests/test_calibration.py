"""Calibration: the threshold rule on normal scores, the 0..1 normalisation, and edge cases."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from rdexpert.calibration import Calibration


def test_calibration_rule_and_normalisation():
    scores = [0.20, 0.22, 0.25, 0.30, 0.24]
    c = Calibration.from_normal_scores(scores)
    assert c.low == 0.20
    assert c.threshold == pytest.approx(np.quantile(scores, 0.99) + 0.25 * (np.quantile(scores, 0.99) - 0.20))
    assert c.normalize(c.low) == 0.0 and c.normalize(c.threshold) == pytest.approx(0.5)
    assert c.normalize(-5.0) == 0.0 and c.normalize(99.0) == 1.0
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


