"""The Evaluate tab: score a checkpoint on its labelled images; a clicked row opens that image in Inspect.

A full evaluation runs the network on every test image (half a minute on a
CPU), so the last few results are cached per checkpoint. A clicked row is run
and drawn into the Inspect components with :mod:`rdexpert.app.inspection`.
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
from rdexpert.app.inspection import InspectView, inspect
from rdexpert.app.registry import Registry, public_text
from rdexpert.app.sessions import Sessions
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
    tab: EvaluateTab,
    registry: Registry,
    cache: OrderedDict[tuple, EvaluationView],
    search_roots: list[Path],
    key: str | None,
    progress: bool = False,
):
    """Every component of ``tab.outputs``: summary markdown, ROC figure, histogram figure, table rows, and the
    image paths in table order.

    Without the test images on this machine, the checkpoint's stored test report stands in (labelled so).
    The cache is keyed by the name and where the checkpoint is: two sessions' fine-tunes may share a name.
    """

    def shown(summary: str, roc=None, hist=None, rows=None, paths=()) -> dict:
        return {tab.summary: summary, tab.roc: roc, tab.hist: hist, tab.table: rows, tab.paths: list(paths)}

    if not key:
        return shown("Choose a checkpoint first.")
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
        return shown(f"**Cannot evaluate** `{key}`: {public_text(error)}")
    except Exception as error:
        log.exception("evaluation of %r failed", key)
        return shown(f"**Cannot evaluate** `{key}`: {failure_message(error)}")
    table = views.metrics_markdown({key: view.metrics})
    hist = views.histogram_figure(view.normalized, view.labels)
    if view.stored:  # an image ROC when every score was stored (no pixel ROC: no maps are kept)
        roc = views.roc_figure(view.scores, view.labels, None, None, view.metrics) if view.every_score else None
        return shown(f"**{key}**: {view.description}.\n\n{table}", roc, hist, view.table(), view.ordered_paths())
    summary = (
        f"**{key}** on the {view.description}. {len(view.paths)} images in {view.seconds:.1f} s on {view.device}; "
        f"accuracy at the calibrated threshold: {100 * view.accuracy():.1f}%.\n\n" + table
    )
    roc = views.roc_figure(view.scores, view.labels, view.maps, view.masks, view.metrics)
    return shown(summary, roc, hist, view.table(), view.ordered_paths())


def evaluate_selected(
    tab: EvaluateTab,
    sessions: Sessions,
    cache: OrderedDict[tuple, EvaluationView],
    search_roots: list[Path],
    key: str | None,
    request: gr.Request | None = None,
    progress=gr.Progress(track_tqdm=True),  # noqa: B008 (gradio reads it from the default)
):
    """The evaluation, with the network's progress bar (tqdm over batches) shown in the page."""
    return evaluate_checkpoint(tab, sessions.registry_for(request), cache, search_roots, key, progress=True)


def open_row(
    inspect_view: InspectView, tabs: gr.Tabs, registry: Registry, key, paths: list[str], threshold: float,
    evt: gr.SelectData,
):
    """``tabs`` switched to Inspect, and every component of ``inspect_view`` drawn for the clicked row's image.

    A click on no image returns ``tabs`` skipped alone: every output is left as it is.
    """
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not paths or row is None or row >= len(paths):
        return {tabs: gr.skip()}
    return {tabs: gr.Tabs(selected="inspect"), **inspect(inspect_view, registry, key, [paths[row]], threshold)}


def open_selected_row(
    inspect_view: InspectView,
    tabs: gr.Tabs,
    sessions: Sessions,
    key,
    paths: list[str],
    threshold: float,
    evt: gr.SelectData,
    request: gr.Request | None = None,
):
    return open_row(inspect_view, tabs, sessions.registry_for(request), key, paths, threshold, evt)


@dataclass
class EvaluateTab:
    run: gr.Button
    summary: gr.Markdown
    roc: gr.Plot
    hist: gr.Plot
    table: gr.Dataframe
    paths: gr.State  # the table's image paths, row by row

    @property
    def outputs(self) -> list:
        """What evaluate_checkpoint() fills."""
        return [self.summary, self.roc, self.hist, self.table, self.paths]


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
    return EvaluateTab(run, summary, roc, hist, table, paths)


def wire(
    tab: EvaluateTab,
    cfg: AppConfig,
    checkpoint: gr.Dropdown,
    tabs: gr.Tabs,
    threshold: gr.Slider,
    inspect_view: InspectView,
) -> None:
    cache: OrderedDict[tuple, EvaluationView] = OrderedDict()
    tab.run.click(
        bind(evaluate_selected, tab, cfg.sessions, cache, cfg.search_roots),
        checkpoint,
        tab.outputs,
        concurrency_id="inspect",
        api_name="evaluate_checkpoint",  # an API endpoint, under the name it always had
    )
    tab.table.select(
        bind(open_selected_row, inspect_view, tabs, cfg.sessions),
        [checkpoint, tab.paths, threshold],
        [tabs, *inspect_view.outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
