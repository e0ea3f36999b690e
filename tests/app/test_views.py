"""Pictures, texts and figures of the page (rdexpert.app.views), as plain functions.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gradio")

from rdexpert.app.views import roc_points  # noqa: E402

from .support import GRADIO_WARNINGS  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_roc_points_match_the_auroc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # with ties
    fpr, tpr = roc_points(scores, labels)
    auc = np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr)
    from rdexpert.evaluation.metrics import roc_auc

    assert auc == pytest.approx(roc_auc(scores, labels), abs=1e-9)


def test_variant_texts_and_notes_follow_the_variant_flags():
    from rdexpert.app import views
    from rdexpert.model import GATES, REFERENCES, VARIANTS

    assert set(views.SWITCH_TEXT) == {(r, g) for r in REFERENCES for g in GATES}
    for name, flags in VARIANTS.items():
        text = views.variant_text(name)
        assert ("trained teacher" in text) == flags.train_teacher and views.SKIP_TEXT[flags.skip] in text
        assert bool(views.switch_note(name, "expert", "gated")) == (not flags.train_teacher)
        assert bool(views.switch_note(name, "teacher", "open")) == (flags.skip != "gated")
        assert views.switch_note(name, "teacher", "gated") == ""
    assert views.variant_text("unknown") == "" and views.switch_note(None, "expert", "open") == ""


def test_metrics_markdown_escapes_the_at_sign_and_says_when_there_is_nothing():
    from rdexpert.app.views import NO_METRICS, metrics_markdown

    table = metrics_markdown({"m": {"aupro": 0.5, "image_auroc": float("nan")}})
    assert table.splitlines() == ["| model | I-AUROC | AUPRO&#64;0.3 |", "|---|---|---|", "| m | – | 50.0 |"]
    assert metrics_markdown({"m": {}}) == NO_METRICS
