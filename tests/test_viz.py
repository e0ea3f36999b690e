"""Plots a person reads during and after training: losses, and the teacher's health below them."""

from __future__ import annotations

import matplotlib.image as mpimg

from rdexpert.evaluation.plots import HEALTH_CURVES, plot_loss_history


def _history(with_health: bool) -> dict:
    history = {"iteration": list(range(1, 41)), "teacher": [2.0 - i / 40 for i in range(40)],
               "student": [9.0 - i / 10 for i in range(40)]}
    if with_health:
        history["health"] = [{"iteration": i, "agreement": 0.2 - i / 400, "separation_teacher": 0.8 + i / 400,
                              "separation_expert": 0.85} for i in (10, 20, 30, 40)]
    return history


def test_loss_png_gains_a_health_panel_when_checks_ran(tmp_path):
    plain = mpimg.imread(plot_loss_history(_history(False), tmp_path / "plain.png"))
    health = mpimg.imread(plot_loss_history(_history(True), tmp_path / "health.png"))
    assert health.shape[0] > plain.shape[0] * 1.4  # a second panel below the losses


def test_finetune_plot_shows_the_health_curves():
    from rdexpert.app.figures import loss_figure

    names = [trace.name for trace in loss_figure(_history(True)).data]
    assert names[:2] == ["teacher loss", "student loss"]
    assert names[2:] == [label for _, label, _ in HEALTH_CURVES]
    assert [trace.name for trace in loss_figure(_history(False)).data] == ["teacher loss", "student loss"]
