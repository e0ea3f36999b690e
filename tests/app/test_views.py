"""Pictures, texts and figures of the page (rdexpert.app.views), as plain functions.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gradio")

from rdexpert.app.figures import roc_points  # noqa: E402

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

    assert set(views.SWITCH_TEXT) == set(views.LOOK_AT) == {(r, g) for r in REFERENCES for g in GATES}
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


def test_switch_texts_say_what_the_variant_has_and_which_setting_is_the_default():
    """Item 5: a panel's text is read from the variant's flags and the checkpoint's default reference."""
    from rdexpert.app import views

    full = views.switch_text("full", "teacher", "gated", "teacher")
    assert full.startswith("**This checkpoint's default") and "trained teacher" in full and "GII injects" in full
    rd = views.switch_text("rd", "teacher", "gated", "teacher")
    assert "frozen expert itself" in rd and "no skips" in rd and "GII injects" not in rd
    assert "ungated" in views.switch_text("full_plain", "teacher", "open", "teacher")
    # a checkpoint whose health check chose the expert: that is its default, the teacher panel says why not
    assert views.switch_text("full", "expert", "gated", "expert").startswith("**This checkpoint's default")
    teacher = views.switch_text("full", "teacher", "gated", "expert")
    assert "This checkpoint's default" not in teacher and "found the trained teacher worse" in teacher
    assert "nothing should change" in views.look_at("rd", "teacher", "open", "teacher")
    assert views.look_at("full", "teacher", "open", "teacher") == views.LOOK_AT[("teacher", "open")]


def test_a_wrong_product_gets_no_defect_verdict():
    """Item 5: an image that is not the trained product reads NOT THE TRAINED PRODUCT (orange), never a red
    ANOMALOUS under the warning; the score stays, as a number."""
    from rdexpert.app.views import NOT_THE_PRODUCT, verdict_html

    shown = verdict_html(2.4, 0.5, 3.0, 1.0, "", out_of_distribution=True)
    assert NOT_THE_PRODUCT in shown and "ANOMALOUS" not in shown and "#c62828" not in shown
    assert "2.400" in shown and "4.8 × the threshold" in shown and 'data-ood="true"' in shown
    assert "ANOMALOUS" in verdict_html(2.4, 0.5)


def test_gate_picture_lies_over_the_image_with_a_colour_bar():
    """Item 11: the gate map over the (grey) picture, and a colour bar 0 … 1 below it."""
    from rdexpert.app.views import DISPLAY_SIZE, colour_bar, gate_picture

    s = np.full((4, 4), 0.5, np.float32)
    image = np.zeros((64, 64, 3), np.uint8)
    image[:32] = 255  # a bright top half: seen through the map
    picture = gate_picture(s, image)
    bar = colour_bar(DISPLAY_SIZE)
    assert picture.shape == (DISPLAY_SIZE + bar.shape[0], DISPLAY_SIZE, 3)
    assert picture[:DISPLAY_SIZE // 2].mean() > picture[DISPLAY_SIZE // 2:DISPLAY_SIZE].mean() + 50  # image shows
    assert np.array_equal(picture[DISPLAY_SIZE:], bar)
    left, right = bar[8, 2], bar[8, -3]  # viridis: dark blue-purple at 0, yellow at 1
    assert left[2] > left[1] and right[0] > 200 and right[1] > 200
