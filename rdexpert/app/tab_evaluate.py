"""The Evaluate tab: score a checkpoint on its labelled images; a clicked row opens that image in Inspect.

A full evaluation runs the network on every test image (half a minute on a
CPU), so the last few results are cached per checkpoint.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from rdexpert.app import views
from rdexpert.app.common import AppConfig, bind, failure_message
from rdexpert.app.evaluation import TABLE_HEADERS, EvaluationView, NoTestSplit, run_evaluation, stored_evaluation
from rdexpert.app.registry import Registry, public_text
from rdexpert.app.sessions import Sessions
from rdexpert.app.tab_inspect import OUTPUT_COUNT, inspect
from rdexpert.checkpoint.folder import CheckpointError

log = logging.getLogger(__name__)

INTRO = (
    "Score the selected checkpoint on its labelled test images (its config's dataset root "
    "and category, when that folder is on this machine; for a fine-tuned model, its "
    "held-out and defective uploads). Click a row to open that image in Inspect. The first evaluation "
    "of a checkpoint runs the network on every image (MPDD metal_plate, 107 images at 256 px: "
    "about half a minute on 2 CPU cores); later ones are cached."
)
CACHED_EVALUATIONS = 3


def evaluate_checkpoint(
    registry: Registry,
    cache: OrderedDict[tuple, EvaluationView],
    search_roots: list[Path],
    key: str | None,
    progress: bool = False,
):
    """(summary markdown, ROC figure, histogram figure, table rows, image paths in table order).

    Without the test images on this machine, the checkpoint's stored test report stands in (labelled so).
    The cache is keyed by the name and where the checkpoint is: two sessions' fine-tunes may share a name.
    """
    nothing = (None, None, None, [])
    if not key:
        return ("Choose a checkpoint first.", *nothing)
    try:
        entry = registry.get(key)
        cache_key = (key, entry.source, entry.ref)
        view = cache.get(cache_key)
        if view is None:
            try:
                view = run_evaluation(key, entry, registry.predictor(key), search_roots, progress=progress)
            except NoTestSplit:
                view = stored_evaluation(key, entry)
                if view is None:
                    raise
            cache[cache_key] = view
            while len(cache) > CACHED_EVALUATIONS:
                cache.popitem(last=False)
    except (NoTestSplit, CheckpointError, KeyError) as error:
        return (f"**Cannot evaluate** `{key}`: {public_text(error)}", *nothing)
    except Exception as error:
        log.exception("evaluation of %r failed", key)
        return (f"**Cannot evaluate** `{key}`: {failure_message(error)}", *nothing)
    table = views.metrics_markdown({key: view.metrics})
    hist = views.histogram_figure(view.normalized, view.labels)
    if view.stored:  # an image ROC when every score was stored (no pixel ROC: no maps are kept)
        roc = views.roc_figure(view.scores, view.labels, None, None, view.metrics) if view.every_score else None
        return f"**{key}**: {view.description}.\n\n{table}", roc, hist, view.table(), view.ordered_paths()
    summary = (
        f"**{key}** on the {view.description}. {len(view.paths)} images in {view.seconds:.1f} s on {view.device}; "
        f"accuracy at the calibrated threshold: {100 * view.accuracy():.1f}%.\n\n" + table
    )
    roc = views.roc_figure(view.scores, view.labels, view.maps, view.masks, view.metrics)
    return summary, roc, hist, view.table(), view.ordered_paths()


def evaluate_selected(
    sessions: Sessions,
    cache: OrderedDict[tuple, EvaluationView],
    search_roots: list[Path],
    key: str | None,
    request: gr.Request | None = None,
    progress=gr.Progress(track_tqdm=True),  # noqa: B008 (gradio reads it from the default)
):
    """The evaluation, with the network's progress bar (tqdm over batches) shown in the page."""
    return evaluate_checkpoint(sessions.registry_for(request), cache, search_roots, key, progress=True)


def open_row(registry: Registry, key, paths: list[str], threshold: float, evt: gr.SelectData):
    """(tabs, *Inspect outputs): switch to Inspect with the clicked row's image."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not paths or row is None or row >= len(paths):
        return (gr.skip(), *([gr.skip()] * OUTPUT_COUNT))
    return (gr.Tabs(selected="inspect"), *inspect(registry, key, [paths[row]], threshold))


def open_selected_row(
    sessions: Sessions, key, paths: list[str], threshold: float, evt: gr.SelectData, request: gr.Request | None = None
):
    return open_row(sessions.registry_for(request), key, paths, threshold, evt)


@dataclass
class EvaluateTab:
    run: gr.Button
    table: gr.Dataframe
    paths: gr.State  # the table's image paths, row by row
    outputs: list  # what evaluate_checkpoint() returns, in order


def build(cfg: AppConfig) -> EvaluateTab:
    """The tab's components (inside ``gr.Tab``)."""
    gr.Markdown(INTRO)
    paths = gr.State([])
    run = gr.Button("Evaluate the selected checkpoint", variant="primary", elem_id="rdx-ev-run")
    summary = gr.Markdown(elem_id="rdx-ev-summary")
    with gr.Row():
        roc = gr.Plot(label="ROC", elem_id="rdx-ev-roc")
        hist = gr.Plot(label="Score histogram", elem_id="rdx-ev-hist")
    table = gr.Dataframe(
        headers=TABLE_HEADERS,
        interactive=False,
        elem_id="rdx-ev-table",
        max_height=420,
        label="Per image (highest score first)",
    )
    return EvaluateTab(run, table, paths, [summary, roc, hist, table, paths])


def wire(
    tab: EvaluateTab,
    cfg: AppConfig,
    checkpoint: gr.Dropdown,
    tabs: gr.Tabs,
    threshold: gr.Slider,
    inspect_outputs: list,
) -> None:
    cache: OrderedDict[tuple, EvaluationView] = OrderedDict()
    tab.run.click(
        bind(evaluate_selected, cfg.sessions, cache, cfg.search_roots),
        checkpoint,
        tab.outputs,
        concurrency_id="inspect",
        api_name="evaluate_checkpoint",  # an API endpoint, under the name it always had
    )
    tab.table.select(
        bind(open_selected_row, cfg.sessions),
        [checkpoint, tab.paths, threshold],
        [tabs, *inspect_outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
