"""The Evaluate tab's handlers (rdexpert.app.tab_evaluate), without a browser: the stored report without data, and
refusals (with Fine-tune's).
"""

from __future__ import annotations

import collections

import pytest

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry  # noqa: E402

from .support import GRADIO_WARNINGS, select_event, without_data  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_evaluate_falls_back_to_the_stored_test_report(app_registry, monkeypatch, tmp_path, parts):
    """No data folder: the checkpoint's test/ report (metrics, overlay scores) is shown, labelled; a checkpoint
    without a report still says it cannot evaluate."""
    from rdexpert.app.evaluation import STORED_LABEL
    from rdexpert.app.tab_evaluate import evaluate_checkpoint

    key = without_data(monkeypatch, app_registry, tmp_path)
    ev = parts.evaluate
    out = evaluate_checkpoint(ev, app_registry, collections.OrderedDict(), [], key)
    summary, roc, hist, rows, paths = out[ev.summary], out[ev.roc], out[ev.hist], out[ev.table], out[ev.paths]
    assert STORED_LABEL in summary and "all 107 test images" in summary and "I-AUROC" in summary
    assert paths == []  # no file to open in Inspect
    # every image's stored score (test/scores.csv): all 107 rows, and the image ROC drawn from them
    assert len(rows) == 107 and rows[0][2] == "defective" and rows[-1][2] == "normal"
    assert roc is not None and "image" in roc.data[0].name
    assert [row[3] for row in rows] == sorted((row[3] for row in rows), reverse=True)
    assert {trace.name.split(" ")[0] for trace in hist.data} == {"normal", "defective"}
    plain_rd = next(k for k in app_registry.choices() if app_registry.get(k).variant == "rd")
    monkeypatch.setitem(app_registry.get(plain_rd).config["dataset"], "root", str(tmp_path / "no_such_data"))
    out = evaluate_checkpoint(ev, app_registry, collections.OrderedDict(), [], plain_rd)
    assert "Cannot evaluate" in out[ev.summary]


def test_finetune_and_evaluate_handlers_refuse_without_a_browser(tmp_path, parts):
    import gradio as gr

    from rdexpert.app.tab_evaluate import evaluate_checkpoint, open_row
    from rdexpert.app.tab_finetune import cancel, finetune
    from rdexpert.app.ui import AppConfig

    registry = Registry()
    cfg = AppConfig(registry=registry, workdir=tmp_path)
    ft, ev = parts.finetune, parts.evaluate
    status = next(finetune(ft, cfg, None, None, None, None, "full", 64, 3, "x", False, None))[ft.status]
    assert "Upload normal images" in status
    assert "No fine-tune is running" in cancel(cfg.sessions, None)
    assert evaluate_checkpoint(ev, registry, {}, [], None)[ev.summary] == "Choose a checkpoint first."
    assert "Cannot evaluate" in evaluate_checkpoint(ev, registry, {}, [], "no such checkpoint")[ev.summary]
    out = open_row(parts.inspect.view, parts.tabs, registry, "k", [], 0.5, select_event([3, 1]))
    assert out == {parts.tabs: gr.skip()}  # nothing to open: every output left as it is (unnamed ones too)
