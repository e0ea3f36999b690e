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

With synthetic anomalies (the default at the end of training, and ``rdexpert
calibrate``): the held-out normal images alone are too few to say where new normal
scores end (metal_plate's 5 held-out scores reach 1.53, its test normals 1.91), but
synthetic anomalies made on those same images say where defects begin. The
threshold goes in the middle of the gap between the two::

    gap_low   = max(normal scores)
    gap_high  = quantile(synthetic-anomaly scores, 0.05)   # the faintest 5 % are near-invisible blends
    threshold = max(normal-only rule above, (gap_low + gap_high) / 2)

the widest margin to both sides (a one-dimensional maximum-margin choice). When the
two overlap (no gap), the normal-only rule stands and the estimated miss rate says
how many synthetic anomalies it lets through. Stored with the threshold: the method,
how many normal images and synthetic anomalies it saw, the observed false-positive
rate with a 95 % upper bound (Wilson), and the synthetic miss rate.

Normalisation (for display and for comparing categories): a single linear map with
``low -> 0`` and ``threshold -> 0.5``, clipped only below::

    normalized = max(0, 0.5 * (score - low) / (threshold - low))

so a normalized score >= 0.5 means "anomalous", and it keeps growing above 1: twice
the threshold's distance from the normal minimum reads 1.0, a wrong product may read
3. The same map applies to every pixel of an anomaly map, so an overlay's 0.5 contour
is the decision boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILE = 0.99
MARGIN = 0.25
# a synthetic miss rate from which summary() warns in plain words that many real defects will pass (measured:
# tire's calibration estimated 22 of 42 missed, and the test split missed 87 of 87 at that threshold)
HIGH_MISS_RATE = 0.5
SYNTHETIC_QUANTILE = 0.05  # synthetic anomalies fainter than this are not allowed to pull the threshold down
NORMALIZATION = "max(0, 0.5 * (score - low) / (threshold - low)): low -> 0, threshold -> 0.5, unbounded above"


def wilson_upper(failures: int, trials: int, z: float = 1.96) -> float:
    """Upper end of the 95 % Wilson interval of a rate seen as ``failures`` of ``trials``."""
    if trials <= 0:
        return 1.0
    p = failures / trials
    centre = p + z * z / (2 * trials)
    spread = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return float(min(1.0, (centre + spread) / (1 + z * z / trials)))
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
    synthetic_scores: tuple[float, ...] = ()  # scores of synthetic anomalies on the same normal images
    method: str = "normal images"  # or "normal images + synthetic anomalies"
    # scores of faint synthetic anomalies (rdexpert.training.health.FAINT_BETA): not used for the threshold, only to
    # estimate how many subtle defects it lets through
    faint_scores: tuple[float, ...] = ()

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

    @classmethod
    def from_normal_and_synthetic(
        cls, normal_scores, synthetic_scores, source: str = "held-out normal training images", faint_scores=(),
    ) -> "Calibration":
        """The threshold in the gap between normal scores and synthetic-anomaly scores (module docstring);
        ``faint_scores`` only feed the estimates."""
        base = cls.from_normal_scores(normal_scores, source=source)
        synthetic = np.asarray(synthetic_scores, dtype=np.float64).ravel()
        faint = tuple(round(float(v), 6) for v in np.asarray(faint_scores, dtype=np.float64).ravel())
        if synthetic.size == 0:
            return base
        if not np.isfinite(synthetic).all():
            raise ValueError("synthetic-anomaly scores contain NaN or infinity; the model output is broken")
        gap_low, gap_high = max(base.normal_scores), float(np.quantile(synthetic, SYNTHETIC_QUANTILE))
        if gap_high > gap_low and (gap_low + gap_high) / 2 > base.threshold:
            threshold = (gap_low + gap_high) / 2
            rule = (f"midpoint of the max of {len(base.normal_scores)} normal scores and the {SYNTHETIC_QUANTILE:g} quantile "
                    f"of {synthetic.size} synthetic-anomaly scores (not below: {base.rule})")
        else:
            threshold = base.threshold
            rule = base.rule + (f"; {synthetic.size} synthetic anomalies overlap the normal scores (no gap)"
                                if gap_high <= gap_low else "; the synthetic gap lies below it")
        return cls(threshold=threshold, low=base.low, source=source, rule=rule, normal_scores=base.normal_scores,
                   synthetic_scores=tuple(round(float(v), 6) for v in synthetic),
                   method="normal images + synthetic anomalies", faint_scores=faint)

    def estimates(self) -> dict:
        """What the calibration data says about this threshold (no test images involved)."""
        normal = np.asarray(self.normal_scores)
        flagged = int((normal >= self.threshold).sum())
        out = {"normal_images": int(normal.size), "normal_flagged": flagged,
               "false_positive_rate": flagged / normal.size if normal.size else None,
               "false_positive_rate_upper95": wilson_upper(flagged, int(normal.size))}
        if self.synthetic_scores:
            synthetic = np.asarray(self.synthetic_scores)
            missed = int((synthetic < self.threshold).sum())
            out.update(synthetic_anomalies=int(synthetic.size), synthetic_missed=missed,
                       synthetic_miss_rate=missed / synthetic.size)
        if self.faint_scores:
            faint = np.asarray(self.faint_scores)
            missed = int((faint < self.threshold).sum())
            out.update(faint_anomalies=int(faint.size), faint_missed=missed, faint_miss_rate=missed / faint.size)
        return out

    def summary(self, warn: bool = True) -> str:
        """One plain-words sentence on how the threshold was chosen and what that data says about it (and
        :meth:`miss_warning` after it, unless ``warn`` is False)."""
        e = self.estimates()
        text = (f"threshold from {self.method} ({self.source}): {e['normal_flagged']} of {e['normal_images']} normal "
                f"images flagged (false-positive rate ≤ {100 * e['false_positive_rate_upper95']:.0f} % at 95 % confidence)")
        if "synthetic_anomalies" in e:
            text += f", {e['synthetic_missed']} of {e['synthetic_anomalies']} synthetic anomalies missed"
        if "faint_anomalies" in e:
            text += f" ({e['faint_missed']} of {e['faint_anomalies']} faint ones)"
        warning = self.miss_warning() if warn else None
        return text + (f". {warning}" if warning else "")

    def miss_warning(self) -> str | None:
        """A plain-words warning when the calibration data says most defects would pass the threshold, else None."""
        e = self.estimates()
        miss = max(e.get("synthetic_miss_rate", 0.0), e.get("faint_miss_rate", 0.0))
        if miss < HIGH_MISS_RATE:
            return None
        return (f"Warning: {100 * miss:.0f} % of the synthetic defects score below this threshold, so expect this "
                "model to miss many real defects, subtle ones most. Synthetic defects are only a proxy (on the "
                "development products the real miss rate was sometimes far higher, sometimes far lower): measure it on "
                "labelled defects of your own (rdexpert test) before using the verdict as a pass/fail gate; the map "
                "and the ranking of images stay useful")

    def with_threshold(self, threshold: float, rule: str = "set by hand") -> "Calibration":
        """The same normalisation anchor with another threshold (a slider, the F1-optimal one, ...)."""
        threshold = float(threshold)
        low = self.low
        if low >= threshold:  # keep the scale's width when the new threshold is below the normal minimum
            low = threshold - (self.threshold - self.low)
        return Calibration(threshold, low, self.source, rule, self.normal_scores, self.f1_threshold,
                           self.synthetic_scores, self.method, self.faint_scores)

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
        """Map raw scores (or map pixels) linearly so ``low -> 0`` and ``threshold -> 0.5``; only negatives are
        clipped, so the value stays monotone (and meaningful) far above the threshold."""
        values = 0.5 * (np.asarray(score, dtype=np.float64) - self.low) / (self.threshold - self.low)
        values = np.maximum(values, 0.0)
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
            "method": self.method,
            "normalization": NORMALIZATION,
            "holdout_scores": list(self.normal_scores),  # the normal scores the rule was applied to
            "estimates": self.estimates(),
        }
        if self.synthetic_scores:
            out["synthetic_scores"] = list(self.synthetic_scores)
        if self.faint_scores:
            out["faint_scores"] = list(self.faint_scores)
        if self.f1_threshold is not None:
            out["f1_threshold"] = self.f1_threshold
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        """Read a checkpoint's ``calibration`` section (also the first format: threshold + holdout_scores). A value of
        the wrong type is a ValueError naming the field (read_config refuses such a config.json before this)."""
        if not isinstance(data, dict):
            raise ValueError(f"config.json 'calibration' must be an object, got {type(data).__name__}")
        if data.get("threshold") is None:
            raise ValueError("the checkpoint has no calibrated threshold (config.json 'calibration' is empty)")
        scores = _numbers(data.get("holdout_scores"), "holdout_scores")
        threshold = _number(data["threshold"], "threshold")
        low = data.get("low")
        if low is None:  # first format: anchor at the lowest normal score, or at zero
            low = min(scores) if scores and min(scores) < threshold else min(0.0, threshold - 1.0)
        f1 = data.get("f1_threshold")
        return cls(
            threshold=threshold,
            low=_number(low, "low"),
            source=_text(data.get("source", "held-out normal training images"), "source"),
            rule=_text(data.get("rule", data.get("threshold_rule", "")), "rule"),
            normal_scores=scores,
            f1_threshold=None if f1 is None else _number(f1, "f1_threshold"),
            synthetic_scores=_numbers(data.get("synthetic_scores"), "synthetic_scores"),
            method=_text(data.get("method", "normal images"), "method"),
            faint_scores=_numbers(data.get("faint_scores"), "faint_scores"),
        )

    @classmethod
    def from_config(cls, config: dict) -> "Calibration":
        """The calibration stored in a checkpoint's config.json."""
        return cls.from_dict(config.get("calibration") or {})


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise ValueError(f"calibration.{name} must be a finite number, got {value!r:.60}")
    return float(value)


def _numbers(values, name: str) -> tuple[float, ...]:
    if values is None:
        return ()
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"calibration.{name} must be a list of numbers, got {type(values).__name__}")
    return tuple(_number(v, f"{name}[{i}]") for i, v in enumerate(values))


def _text(value, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"calibration.{name} must be a string, got {value!r:.60}")
    return value
