"""The Evaluate tab's handlers (rdexpert.app.tab_evaluate), without a browser: the stored report without data, and
refusals (with Fine-tune's).
"""

from __future__ import annotations

import collections

import pytest

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry  # noqa: E402

from .support import DEMO, EXAMPLES, GRADIO_WARNINGS, select_event, without_data  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_evaluate_falls_back_to_the_stored_test_report(app_registry, monkeypatch, tmp_path, parts):
    """No data folder: the checkpoint's test/ report (metrics, overlay scores) is shown, labelled; a checkpoint
    without a report still says it cannot evaluate."""
    from rdexpert.app.evaluation import STORED_LABEL
    from rdexpert.app.tab_evaluate import evaluate_checkpoint

    key = without_data(monkeypatch, app_registry, tmp_path)
    ev = parts.evaluate
    out = evaluate_checkpoint(ev, app_registry, collections.OrderedDict(), [], key)
    summary, roc, hist, rows, opened = out[ev.summary], out[ev.roc], out[ev.hist], out[ev.table], out[ev.rows]
    assert STORED_LABEL in summary and "all 107 test images" in summary and "I-AUROC" in summary
    assert "cannot be opened in Inspect" in summary  # the text says what a click does here
    assert len(opened) == 107 and not any(row["path"] for row in opened)  # no file to open in Inspect
    assert [row["truth"] for row in opened] == [row[2] for row in rows]
    drawn = [row for row in opened if row["overlay"]]
    assert len(drawn) == len(list((DEMO / "test" / "overlays").glob("*.png")))  # each stored overlay, found
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
    out = open_row(parts.inspect.view, parts.tabs, ev, registry, "k", [], 0.5, select_event([3, 1]))
    assert out == {parts.tabs: gr.skip()}  # nothing to open: every output left as it is (unnamed ones too)


def test_a_clicked_row_opens_what_it_can(app_registry, monkeypatch, tmp_path, parts):
    """Item 8: without the data, a row shows its stored score, truth and overlay (here, in Evaluate); with it, the
    image opens in Inspect with its ground truth beside the verdict."""
    import gradio as gr

    from rdexpert.app.tab_evaluate import evaluate_checkpoint, open_row

    ev, view = parts.evaluate, parts.inspect.view
    key = without_data(monkeypatch, app_registry, tmp_path)
    rows = evaluate_checkpoint(ev, app_registry, collections.OrderedDict(), [], key)[ev.rows]
    first = next(i for i, row in enumerate(rows) if row["overlay"])
    out = open_row(view, parts.tabs, ev, app_registry, key, rows, 0.5, select_event([first, 1]))
    assert out[parts.tabs] == gr.skip() and view.state not in out  # Inspect is left as it is
    assert rows[first]["name"] in out[ev.detail] and "not on this machine" in out[ev.detail]
    assert f"ground truth: <b>{rows[first]['truth']}</b>" in out[ev.detail]
    assert out[ev.detail_image].value["path"].endswith(".png") and out[ev.detail_image].visible
    missing = next(i for i, row in enumerate(rows) if not row["overlay"])
    out = open_row(view, parts.tabs, ev, app_registry, key, rows, 0.5, select_event([missing, 0]))
    assert "drew no overlay" in out[ev.detail] and not out[ev.detail_image].visible

    example = str(EXAMPLES / "defect_train_00066.png")
    row = {"path": example, "name": "defect_train_00066.png", "truth": "defective", "score": 0.0,
           "normalized": 0.0, "overlay": None}
    out = open_row(view, parts.tabs, ev, app_registry, key, [row], 0.5, select_event([0, 1]))
    assert out[parts.tabs].selected == "inspect" and "ground truth: <b>defective</b>" in out[view.verdict]
