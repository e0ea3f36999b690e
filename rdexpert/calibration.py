"""Decision threshold and score normalisation: the one place that turns raw scores into decisions.

Raw scores (max of the fused cosine-distance map) have no fixed scale: they
depend on backbone, category and training length. A checkpoint therefore stores
a calibration, and every consumer (Predictor, CLI, app, ONNX metadata) uses it
through :class:`Calibration`.

Threshold rule (from normal images only, so the test split is never touched)::

    low       = min(normal scores)
    high      = quantile(normal scores, 0.99)     # the max when there are < 100 images
    threshold = high + margin * (high - low)      # margin = 0.25

The normal scores come from training images held out of training. Why a margin:
with the few held-out images a category usually leaves (5 of MPDD metal_plate's
54), the sample 99% quantile is the sample maximum, and a new normal image
exceeds the maximum of n others with probability 1/(n + 1): 17% for n = 5.
Extending the observed normal range by a quarter of its width lowers that; for
Gaussian normal scores the expected false-alarm rate becomes about 9% (n = 5),
3% (n = 10) and 0.5% (n = 30) (tests/test_inference.py checks these). A wider
margin would cost recall on subtle defects, whose scores often sit just above
the normal range. It is a documented default, not an optimum: hold out more
images (``TrainConfig.holdout_fraction``) for a tighter estimate, and when
labelled defects exist, ``rdexpert test --save-metrics`` stores the F1-optimal
threshold beside it (``f1_threshold``), which the Predictor uses with
``threshold="f1"``.

Normalisation (for display and for comparing categories): a single linear map,
clipped to [0, 1], with ``low -> 0`` and ``threshold -> 0.5``::

    normalized = clip(0.5 * (score - low) / (threshold - low), 0, 1)

so a normalized score >= 0.5 means "anomalous". The same map applies to every
pixel of an anomaly map, so an overlay's 0.5 contour is the decision boundary.
Scores far above the threshold all saturate at 1; rank by the raw score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILE = 0.99
MARGIN = 0.25
THRESHOLD_CHOICES = ("calibrated", "f1")


@dataclass(frozen=True)
class Calibration:
    """A decision threshold on raw scores and the linear normalisation anchored at it."""

    threshold: float
    low: float  # the raw score that normalises to 0 (the lowest normal score seen)
    source: str = "held-out normal training images"
    rule: str = ""
    normal_scores: tuple[float, ...] = ()
    f1_threshold: float | None = None

    def __post_init__(self):
        if not (np.isfinite(self.threshold) and np.isfinite(self.low)):
            raise ValueError(f"calibration needs finite values, got threshold={self.threshold}, low={self.low}")
        if self.low >= self.threshold:
            raise ValueError(f"calibration needs low < threshold, got low={self.low}, threshold={self.threshold}")

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_normal_scores(
        cls,
        scores,
        quantile: float = QUANTILE,
        margin: float = MARGIN,
        source: str = "held-out normal training images",
    ) -> "Calibration":
        """Apply the module's threshold rule to scores of normal images the model did not train on."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        if s.size == 0:
            raise ValueError("calibration needs at least one normal image score")
        if not np.isfinite(s).all():
            raise ValueError("calibration scores contain NaN or infinity; the model output is broken")
        if not 0.5 <= quantile <= 1 or margin < 0:
            raise ValueError(f"need 0.5 <= quantile <= 1 and margin >= 0, got {quantile}, {margin}")
        low, high = float(s.min()), float(np.quantile(s, quantile))
        # one image (or identical scores) has no spread: use 1% of the score level instead
        spread = max(high - low, 0.01 * abs(high), 1e-6)
        return cls(
            threshold=high + margin * spread,
            low=min(low, high - spread),
            source=source,
            rule=f"quantile {quantile:g} of {s.size} normal scores + {margin:g} x (that quantile - their minimum)",
            normal_scores=tuple(round(float(v), 6) for v in s),
        )

    def with_threshold(self, threshold: float, rule: str = "set by hand") -> "Calibration":
        """The same normalisation anchor with another threshold (a slider, the F1-optimal one, ...)."""
        threshold = float(threshold)
        low = self.low
        if low >= threshold:  # keep the scale's width when the new threshold is below the normal minimum
            low = threshold - (self.threshold - self.low)
        return Calibration(threshold, low, self.source, rule, self.normal_scores, self.f1_threshold)

    def choose(self, threshold: str | float | None) -> "Calibration":
        """``None``/"calibrated": as stored; "f1": the stored F1-optimal threshold; a number: that threshold."""
        if threshold is None or threshold == "calibrated":
            return self
        if threshold == "f1":
            if self.f1_threshold is None:
                raise ValueError(
                    "this checkpoint has no F1 threshold; measure one with "
                    "`rdexpert test --checkpoint DIR --data-root ... --out ... --save-metrics`"
                )
            return self.with_threshold(self.f1_threshold, "F1-max on a labelled test split")
        if isinstance(threshold, str):
            raise ValueError(f"threshold must be a number or one of {THRESHOLD_CHOICES}, got {threshold!r}")
        return self.with_threshold(threshold)

    # -- using ------------------------------------------------------------------------------
    def normalize(self, score: float | np.ndarray) -> float | np.ndarray:
        """Map raw scores (or map pixels) linearly so ``low -> 0`` and ``threshold -> 0.5``, clipped to [0, 1]."""
        values = 0.5 * (np.asarray(score, dtype=np.float64) - self.low) / (self.threshold - self.low)
        values = np.clip(values, 0.0, 1.0)
        if np.ndim(score) == 0:
            return float(values)
        return values.astype(np.float32 if np.asarray(score).dtype == np.float32 else np.float64)

    def label(self, score: float | np.ndarray) -> int | np.ndarray:
        """1 where ``score >= threshold``."""
        result = np.asarray(score) >= self.threshold
        return int(result) if result.ndim == 0 else result.astype(np.int64)

    # -- config.json ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {
            "threshold": self.threshold,
            "low": self.low,
            "source": self.source,
            "rule": self.rule,
            "normalization": "clip(0.5 * (score - low) / (threshold - low), 0, 1): low -> 0, threshold -> 0.5",
            "holdout_scores": list(self.normal_scores),  # the normal scores the rule was applied to
        }
        if self.f1_threshold is not None:
            out["f1_threshold"] = self.f1_threshold
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        """Read a checkpoint's ``calibration`` section (also the first format: threshold + holdout_scores)."""
        if not data or data.get("threshold") is None:
            raise ValueError("the checkpoint has no calibrated threshold (config.json 'calibration' is empty)")
        scores = data.get("holdout_scores") or []
        threshold = float(data["threshold"])
        low = data.get("low")
        if low is None:  # first format: anchor at the lowest normal score, or at zero
            low = min(scores) if scores and min(scores) < threshold else min(0.0, threshold - 1.0)
        f1 = data.get("f1_threshold")
        return cls(
            threshold=threshold,
            low=float(low),
            source=data.get("source", "held-out normal training images"),
            rule=data.get("rule", data.get("threshold_rule", "")),
            normal_scores=tuple(float(v) for v in scores),
            f1_threshold=None if f1 is None else float(f1),
        )

    @classmethod
    def from_config(cls, config: dict) -> "Calibration":
        """The calibration stored in a checkpoint's config.json."""
        return cls.from_dict(config.get("calibration") or {})
