"""The Inspect tab: upload images or click an example, see the verdict and the maps, move the threshold.

The result itself (running the network once, keeping its output, drawing it
for any threshold) is :mod:`rdexpert.app.inspection`; this module lays out the
tab's components and wires its events: a new request runs the network, the
threshold slider and the results gallery only redraw from the kept state, and
a new checkpoint reruns the images on screen.

Dropping files on the upload inspects them at once, and only them: gradio's
file box appends new files to those already there, so the box is trimmed to
the new ones first (:func:`keep_new_uploads`). Every request scrolls the page
to its answer (:func:`~rdexpert.app.common.reveal`): on a phone the examples sit
below the verdict, and a refusal is shown above the result area, where the eye is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from rdexpert.app import views
from rdexpert.app.common import (
    AppConfig,
    bind,
    clicked_example,
    examples_follow,
    examples_gallery,
    key_category,
    reveal,
)
from rdexpert.app.examples import ExampleSet
from rdexpert.app.header import describe, first_choice
from rdexpert.app.inspection import (
    MAX_INSPECT_IMAGES,
    MAX_INSPECT_PIXELS,
    InspectState,
    InspectView,
    inspect,
    render,
)
from rdexpert.app.sessions import Sessions


# -- handlers: each returns {component: value} for the components of an InspectView ------------
def uploaded_paths(uploaded) -> list[str]:
    return [str(f if isinstance(f, (str, Path)) else getattr(f, "path", None) or f.name) for f in (uploaded or [])]


def inspect_files(
    view: InspectView,
    sessions: Sessions,
    key: str | None,
    uploaded,
    threshold: float,
    request: gr.Request | None = None,
):
    return inspect(view, sessions.registry_for(request), key, uploaded_paths(uploaded), threshold)


def keep_new_uploads(files: gr.File, count: gr.State, uploaded, before: int) -> dict:
    """Files were dropped on the box: gradio appended them to the ``before`` files already there; keep only the
    new ones (a new upload is a new request, never "all the files so far")."""
    paths = uploaded_paths(uploaded)
    new = paths[before:] if 0 <= before < len(paths) else paths
    return {files: new or None, count: len(new)}


def inspect_example(
    view: InspectView,
    sessions: Sessions,
    examples: ExampleSet,
    key,
    threshold: float,
    evt: gr.SelectData,
    request: gr.Request | None = None,
):
    """A clicked example (of the gallery shown for ``key``'s product): inspected with its ground truth shown (and
    its mask outlined on the input, when shipped)."""
    example = clicked_example(sessions, examples, key, evt.index, request)
    return inspect(view, sessions.registry_for(request), key, [example.path], threshold, [example.truth],
                   [example.mask])


def rerender(view: InspectView, state: InspectState | None, threshold: float):
    """The slider moved: redraw from the state, without the network."""
    return render(view, state, threshold)


def select_result(view: InspectView, state: InspectState | None, threshold: float, evt: gr.SelectData):
    """A result picked in the gallery: shown from the state (a new one, with that selection), without the network."""
    if state:
        state = state.select(evt.index)
    return {view.state: state, **render(view, state, threshold)}


def change_checkpoint(
    view: InspectView,
    checkpoint_info: gr.Markdown,
    sessions: Sessions,
    key: str | None,
    state: InspectState | None,
    threshold: float,
    request: gr.Request | None = None,
):
    """A new checkpoint: describe it, and rerun the images on screen with it (same one selected).

    With nothing on screen only the description changes (the components not returned are left as they are).
    """
    registry = sessions.registry_for(request)
    description = describe(registry, key)
    if state and state.items and key:
        out = inspect(view, registry, key, [item.source for item in state.items], threshold,
                      [i.truth for i in state.items], [i.mask for i in state.items])
        if out[view.state] is not None:
            selected = out[view.state].select(state.selected)
            out = {**out, view.state: selected, **render(view, selected, threshold)}
        return {checkpoint_info: description, **out}
    return {checkpoint_info: description}


EXAMPLES_LABEL = "Examples ({what}) — click one"


# -- the tab -------------------------------------------------------------------------------------
@dataclass
class InspectTab:
    files: gr.File
    count: gr.State  # how many files the box held after the last upload (gradio appends new ones)
    run: gr.Button
    examples: gr.Gallery
    threshold: gr.Slider
    view: InspectView  # what the handlers above fill

    @property
    def state(self) -> gr.State:
        return self.view.state

    @property
    def results(self) -> gr.Gallery:
        return self.view.results


def build(cfg: AppConfig, state: gr.State) -> InspectTab:
    """The tab's components (inside ``gr.Tab``); ``state`` holds the :class:`InspectState`."""
    count = gr.State(0)
    with gr.Row(elem_id="rdx-inspect-row"):  # on a phone the CSS in ui.py puts the verdict and map first
        with gr.Column(scale=1, min_width=300, elem_id="rdx-inspect-controls"):
            files = gr.File(
                label=f"Images: drop one or several (up to {MAX_INSPECT_IMAGES}, each at most "
                f"{int(MAX_INSPECT_PIXELS**0.5)}x{int(MAX_INSPECT_PIXELS**0.5)} pixels); they are inspected at once",
                file_count="multiple",
                file_types=["image"],
                elem_id="rdx-files",
                height=120,  # a compact drop zone: on a phone the verdict comes right below it
            )
            run = gr.Button("Inspect", variant="primary", elem_id="rdx-run")
            examples = examples_gallery(cfg, key_category(cfg.registry, first_choice(cfg.registry)), EXAMPLES_LABEL,
                                        "rdx-examples", columns=3, height=260)
            threshold = gr.Slider(
                0.01,
                0.99,
                value=0.5,
                step=0.01,
                label="Decision threshold (calibrated score)",
                info="0.5 is the calibrated threshold (from held-out normal images); lower "
                "is more sensitive. Moving it redraws the contour and the verdict "
                "without running the network again.",
                elem_id="rdx-threshold",
            )
        with gr.Column(scale=2, min_width=300, elem_id="rdx-inspect-results"):
            message = gr.HTML(elem_id="rdx-inspect-message")  # a refusal: above the (empty) result, in view
            verdict = gr.HTML(elem_id="rdx-verdict")
            with gr.Row(elem_id="rdx-inspect-pictures"):
                input_image = gr.Image(
                    label="Input (as the model sees it)", interactive=False, elem_id="rdx-input", height=300
                )
                fused_image = gr.Image(
                    label="Fused anomaly map + contour at the threshold",
                    interactive=False,
                    elem_id="rdx-fused",
                    height=300,
                )
            with gr.Row(elem_id="rdx-inspect-scales"):
                scale_images = [
                    gr.Image(label=f"Scale {name}", interactive=False, height=200, elem_id=f"rdx-scale-{k}")
                    for k, name in enumerate(views.SCALE_NAMES)
                ]
            info = gr.Markdown(elem_id="rdx-inspect-info")
            results = gr.Gallery(
                label="All results (click one to show it above)",
                columns=4,
                height="auto",
                allow_preview=False,
                elem_id="rdx-results",
                visible=False,
                fit_columns=False,
            )
    view = InspectView(state, results, input_image, fused_image, tuple(scale_images), verdict, info, message)
    return InspectTab(files, count, run, examples, threshold, view)


ANSWER = "#rdx-inspect-message"  # the top of the result area: a refusal, else the verdict right below it


def wire(tab: InspectTab, cfg: AppConfig, checkpoint: gr.Dropdown, checkpoint_info: gr.Markdown) -> None:
    sessions, view = cfg.sessions, tab.view
    reveal(tab.run, ANSWER)
    reveal(tab.files, ANSWER, event="upload")
    reveal(tab.examples, ANSWER, event="select")
    # the one intended API endpoint of the tab: inspect uploaded images
    tab.run.click(
        bind(inspect_files, view, sessions),
        [checkpoint, tab.files, tab.threshold],
        view.outputs,
        concurrency_id="inspect",
    )
    # dropped files: the box keeps only them, and they are inspected at once
    tab.files.upload(
        bind(keep_new_uploads, tab.files, tab.count),
        [tab.files, tab.count],
        [tab.files, tab.count],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    ).then(
        bind(inspect_files, view, sessions),
        [checkpoint, tab.files, tab.threshold],
        view.outputs,
        concurrency_id="inspect",
        api_visibility="private",
    )
    tab.files.clear(lambda: 0, None, tab.count, queue=False, api_visibility="private")
    tab.files.delete(lambda files: len(uploaded_paths(files)), tab.files, tab.count, queue=False,
                     api_visibility="private")
    tab.examples.select(
        bind(inspect_example, view, sessions, cfg.examples),
        [checkpoint, tab.threshold],
        view.outputs,
        concurrency_id="inspect",
        api_visibility="private",
    )
    tab.threshold.change(
        bind(rerender, view),
        [view.state, tab.threshold],
        view.drawn,
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    tab.results.select(
        bind(select_result, view),
        [view.state, tab.threshold],
        [view.state, *view.drawn],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    examples_follow(checkpoint, tab.examples, EXAMPLES_LABEL, sessions, cfg.examples)
    checkpoint.change(
        bind(change_checkpoint, view, checkpoint_info, sessions),
        [checkpoint, view.state, tab.threshold],
        [checkpoint_info, *view.outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
