"""The Evaluate tab: score a checkpoint on its labelled images; a clicked row opens that image in Inspect.

A full evaluation runs the network on every test image (half a minute on a
CPU), so the last few results are cached per checkpoint. A clicked row is run
and drawn into the Inspect components with :mod:`rdexpert.app.inspection`, with
its ground truth beside the verdict. Without the images on this machine (a
Space), the checkpoint's stored test report stands in: a clicked row then shows,
here, its stored score and the overlay ``rdexpert test`` drew of it, if any.
Picking another checkpoint never leaves the previous one's results on screen.
"""

from __future__ import annotations

import html
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from rdexpert.app import figures, views
from rdexpert.app.common import AppConfig, bind, failure_message, reveal
from rdexpert.app.evaluation import (
    TABLE_HEADERS,
    EvaluationView,
    NoTestSplit,
    run_evaluation,
    stored_evaluation,
)
from rdexpert.app.inspection import InspectView, inspect
from rdexpert.app.registry import Registry, public_text
from rdexpert.app.sessions import Sessions
from rdexpert.checkpoint.folder import CheckpointError

log = logging.getLogger(__name__)

INTRO = (
    "Score the selected checkpoint on its labelled test images (its config's dataset root "
    "and category, when that folder is on this machine; for a fine-tuned model, its "
    "held-out and defective uploads). Click a row to open that image in Inspect, with its ground truth; "
    "without the images on this machine the checkpoint's stored test results are shown, and a click on a row "
    "shows its stored score and overlay here. The first evaluation of a checkpoint runs the network on every "
    "image (MPDD metal_plate, 107 images at 256 px: about half a minute on 2 CPU cores); later ones are cached."
)
STORED_CLICK = ("The images of these stored results are not on this machine, so a row cannot be opened in Inspect; "
                "click a row to see its stored score here (and the overlay `rdexpert test` drew of it, for the "
                "images it drew).")
CACHED_EVALUATIONS = 3


def evaluate_checkpoint(
    tab: EvaluateTab,
    registry: Registry,
    cache: OrderedDict[tuple, EvaluationView],
    search_roots: list[Path],
    key: str | None,
    progress: bool = False,
    cached_only: bool = False,
):
    """Every component of ``tab.outputs``: summary markdown, ROC figure, histogram figure, table rows, what each
    row opens (:meth:`EvaluationView.ordered_rows`).

    Without the test images on this machine, the checkpoint's stored test report stands in (labelled so).
    The cache is keyed by the name and where the checkpoint is: two sessions' fine-tunes may share a name.
    ``cached_only``: show a cached result, else say how to get one (another checkpoint was picked).
    """

    def shown(summary: str, roc=None, hist=None, rows=None, opened=()) -> dict:
        return {tab.summary: summary, tab.roc: roc, tab.hist: hist, tab.table: rows, tab.rows: list(opened)}

    if not key:
        return shown("Choose a checkpoint first.")
    try:
        entry = registry.get(key)
        cache_key = (key, entry.source, entry.ref)
        view = cache.get(cache_key)
        if view is None and cached_only:
            return shown(f"**{key}**: press *Evaluate the selected checkpoint* to score it.")
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
    hist = figures.histogram_figure(view.normalized, view.labels)
    if view.stored:  # an image ROC when every score was stored (no pixel ROC: no maps are kept)
        roc = figures.roc_figure(view.scores, view.labels, None, None, view.metrics) if view.every_score else None
        return shown(f"**{key}**: {view.description}.\n\n{table}\n\n{STORED_CLICK}", roc, hist, view.table(),
                     view.ordered_rows())
    summary = (
        f"**{key}** on the {view.description}. {len(view.paths)} images in {view.seconds:.1f} s on {view.device}; "
        f"accuracy at the calibrated threshold: {100 * view.accuracy():.1f}%.\n\n" + table
    )
    roc = figures.roc_figure(view.scores, view.labels, view.maps, view.masks, view.metrics)
    return shown(summary, roc, hist, view.table(), view.ordered_rows())


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


def stored_detail(tab: EvaluateTab, row: dict, threshold: float) -> dict:
    """``tab.detail`` and ``tab.detail_image``: a stored row's score, verdict and ground truth, and its overlay."""
    anomalous = row["normalized"] >= threshold
    text = (
        f"<b>{html.escape(row['name'])}</b> (stored result; the image is not on this machine, so it cannot be "
        f"opened in Inspect)"
        + views.verdict_html(row["normalized"], threshold, row["score"])
        + views.truth_html(row["truth"], anomalous)
        + ('<div class="rdx-small">The overlay below is the one <code>rdexpert test</code> drew (ground truth in '
           "green on the left, when the image has a mask).</div>" if row.get("overlay") else
           '<div class="rdx-small"><code>rdexpert test</code> drew no overlay of this image (it draws the '
           "highest-scoring defective and the lowest-scoring normal images).</div>")
    )
    overlay = row.get("overlay")
    return {tab.detail: text, tab.detail_image: gr.Image(value=overlay, visible=bool(overlay))}


def open_row(
    inspect_view: InspectView, tabs: gr.Tabs, tab: EvaluateTab, registry: Registry, key, rows: list[dict],
    threshold: float, evt: gr.SelectData,
):
    """A clicked row: its image in Inspect (``tabs`` switched there, every component of ``inspect_view`` drawn,
    the ground truth beside the verdict); a stored row (no image here): its stored score and overlay in
    ``tab.detail`` / ``tab.detail_image``.

    A click on no row returns ``tabs`` skipped alone: every output is left as it is.
    """
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not rows or index is None or index >= len(rows):
        return {tabs: gr.skip()}
    row = rows[index]
    if not row.get("path"):
        return {tabs: gr.skip(), **stored_detail(tab, row, threshold)}
    return {tabs: gr.Tabs(selected="inspect"),
            **inspect(inspect_view, registry, key, [row["path"]], threshold, [row["truth"]])}


def open_selected_row(
    inspect_view: InspectView,
    tabs: gr.Tabs,
    tab: EvaluateTab,
    sessions: Sessions,
    key,
    rows: list[dict],
    threshold: float,
    evt: gr.SelectData,
    request: gr.Request | None = None,
):
    return open_row(inspect_view, tabs, tab, sessions.registry_for(request), key, rows, threshold, evt)


def checkpoint_changed(
    tab: EvaluateTab,
    sessions: Sessions,
    cache: OrderedDict[tuple, EvaluationView],
    search_roots: list[Path],
    key: str | None,
    request: gr.Request | None = None,
):
    """Another checkpoint was picked: its cached results, or an empty tab saying how to get them (the previous
    checkpoint's results never stay under the new name)."""
    return {**evaluate_checkpoint(tab, sessions.registry_for(request), cache, search_roots, key, cached_only=True),
            **clear_detail(tab)}


def clear_detail(tab: EvaluateTab) -> dict:
    """The stored row's detail emptied (a new evaluation, another checkpoint)."""
    return {tab.detail: "", tab.detail_image: gr.Image(value=None, visible=False)}


@dataclass
class EvaluateTab:
    run: gr.Button
    summary: gr.Markdown
    roc: gr.Plot
    hist: gr.Plot
    table: gr.Dataframe
    rows: gr.State  # what each table row opens (EvaluationView.ordered_rows), row by row
    detail: gr.HTML  # a clicked stored row: its stored score and truth
    detail_image: gr.Image  # and the overlay `rdexpert test` drew of it

    @property
    def outputs(self) -> list:
        """What evaluate_checkpoint() fills (the API endpoint's outputs: summary, plots, table)."""
        return [self.summary, self.roc, self.hist, self.table, self.rows]


def build(cfg: AppConfig) -> EvaluateTab:
    """The tab's components (inside ``gr.Tab``); the two plots stack on a phone (each column has a minimum
    width), and the table keeps its numbers on one line (it scrolls sideways instead)."""
    gr.Markdown(INTRO)
    rows = gr.State([])
    run = gr.Button("Evaluate the selected checkpoint", variant="primary", elem_id="rdx-ev-run")
    summary = gr.Markdown(elem_id="rdx-ev-summary", elem_classes="rdx-table")
    with gr.Row():
        with gr.Column(min_width=340):
            roc = gr.Plot(label="ROC", elem_id="rdx-ev-roc")
        with gr.Column(min_width=340):
            hist = gr.Plot(label="Score histogram", elem_id="rdx-ev-hist")
    table = gr.Dataframe(
        headers=TABLE_HEADERS,
        interactive=False,
        elem_id="rdx-ev-table",
        max_height=420,
        wrap=False,
        label="Per image (highest score first): click a row",
    )
    with gr.Row(elem_id="rdx-ev-detail-row"):
        with gr.Column(min_width=300):
            detail = gr.HTML(elem_id="rdx-ev-detail")
        with gr.Column(min_width=300):
            detail_image = gr.Image(label="Stored overlay", interactive=False, visible=False, height=260,
                                    elem_id="rdx-ev-detail-image")
    return EvaluateTab(run, summary, roc, hist, table, rows, detail, detail_image)


def wire(
    tab: EvaluateTab,
    cfg: AppConfig,
    checkpoint: gr.Dropdown,
    tabs: gr.Tabs,
    threshold: gr.Slider,
    inspect_view: InspectView,
) -> None:
    cache: OrderedDict[tuple, EvaluationView] = OrderedDict()
    # a new table (another evaluation, another checkpoint): the detail of a row of the old one goes
    tab.table.change(
        bind(clear_detail, tab), None, [tab.detail, tab.detail_image], queue=False, show_progress="hidden",
        api_visibility="private",
    )
    tab.run.click(
        bind(evaluate_selected, tab, cfg.sessions, cache, cfg.search_roots),
        checkpoint,
        tab.outputs,
        concurrency_id="inspect",
        api_name="evaluate_checkpoint",  # an API endpoint, under the name it always had
    )
    reveal(tab.run, "#rdx-ev-summary")
    opened = tab.table.select(
        bind(open_selected_row, inspect_view, tabs, tab, cfg.sessions),
        [checkpoint, tab.rows, threshold],
        [tabs, *inspect_view.outputs, tab.detail, tab.detail_image],
        concurrency_id="inspect",
        api_visibility="private",
    )
    # the answer: the image in Inspect (that tab is shown), or a stored row's detail here
    reveal(opened, "#rdx-inspect-message", "#rdx-ev-detail", event="then")
    checkpoint.change(
        bind(checkpoint_changed, tab, cfg.sessions, cache, cfg.search_roots),
        checkpoint,
        [*tab.outputs, tab.detail, tab.detail_image],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
