"""The Gradio page: a header with the checkpoint picker, then the Inspect, Ablations, Fine-tune and Evaluate tabs.

Each tab lives in its own module (``tab_*.py``: components, handlers, wiring);
tabs never import each other: what two tabs share lives in a module of its own
(:mod:`rdexpert.app.inspection`, :mod:`rdexpert.app.common`). This module only
puts the tabs in one ``gr.Blocks`` and connects what crosses tabs (the
checkpoint picker, the Inspect state and threshold, switching tabs), and the
browser session's lifetime: a page's fine-tunes are listed only in that page,
and forgotten when it closes (:mod:`rdexpert.app.sessions`).

Handlers with several outputs return ``{component: value}`` (those left out
keep their value), so adding an output never means counting positions; the
components are bound to the handler as its first arguments (:func:`bind`).

Only Inspect on uploaded images and Evaluate are API endpoints; every other
event (page load, redraws, fine-tune, cancel) is ``api_visibility="private"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from rdexpert.app import header, tab_ablations, tab_evaluate, tab_finetune, tab_inspect  # noqa: E402
from rdexpert.app.common import AppConfig, bind  # noqa: E402
from rdexpert.app.sessions import Sessions  # noqa: E402

__all__ = ["AppConfig", "CSS", "Page", "build_demo", "theme"]

CSS = """
/* no scroll anchoring: when an answer's pictures render below the place it was brought into view, the browser
   would scroll the page by their height to keep some node below steady, and the answer would leave the window */
html, body {overflow-anchor: none}
.rdx-verdict {padding: 4px 0}
#rdx-examples .thumbnail-item, #rdx-abl-examples .thumbnail-item {min-width: 96px}
.rdx-small {font-size: 0.9em; color: #555}
/* gallery captions are shown whole, wrapped (gradio cuts them with an ellipsis: each verdict needed a hover) */
.thumbnail-item .caption-label {white-space: normal !important; overflow-wrap: anywhere;
  max-width: calc(100% - 8px) !important; line-height: 1.25}
/* result galleries: as many columns as fit, at least 150 px each (a fixed column count squeezed them on a phone) */
#rdx-results .grid-container, #rdx-abl-variants .grid-container, #rdx-abl-gates .grid-container {
  grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)) !important}
#rdx-abl-gates .grid-container {grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)) !important}
#rdx-abl-examples .grid-container {grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)) !important}
/* galleries sized by their pictures ("auto"): no empty band below them (gradio gives them 450 px at least) */
#rdx-results .fixed-height, #rdx-abl-examples .fixed-height, #rdx-abl-gates .fixed-height,
#rdx-abl-variants .fixed-height {min-height: 0 !important; max-height: none !important}
/* tables keep each number on one line; a table wider than the page scrolls sideways inside its box */
.rdx-table table {display: block; width: max-content; max-width: 100%; overflow-x: auto}
.rdx-table th, .rdx-table td, #rdx-ev-table td, #rdx-ev-table th {white-space: nowrap}
/* phones: Inspect's two columns become one list, verdict and maps before the examples and the threshold */
@media (max-width: 720px) {
  #rdx-inspect-row {flex-direction: column}
  #rdx-inspect-controls, #rdx-inspect-results {display: contents}
  #rdx-inspect-controls > :has(#rdx-threshold), #rdx-inspect-controls > #rdx-threshold {order: 1}
  #rdx-inspect-controls > :has(#rdx-examples), #rdx-inspect-controls > #rdx-examples {order: 2}
  #rdx-inspect-pictures, #rdx-inspect-scales {flex-direction: column}  /* labels not cut */
  #rdx-ft-uploads .file-preview-holder {display: none}  /* the file count under each upload stands in */
  #rdx-checkpoint-info {max-height: 6.5em; overflow-y: auto}  /* scrolls: the verdict stays on the first screen */
}
"""


def theme() -> gr.themes.Base:
    """Gradio's default theme with its own font in regular and **bold** (700). The default declares 400 and 600,
    and the 600 file gradio ships holds a few glyphs only (a capital A among them): bold text mixed faces and
    read "ᴀNOMᴀLOUS", "I-ᴀUROC". Without a 600 face, semibold and bold text use the complete bold file."""
    return gr.themes.Default(
        font=(gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif", "system-ui",
              "sans-serif"),
    )


@dataclass
class Page:
    """The page's parts, kept on the demo as ``demo.rdx_page`` (tests call handlers with its components)."""

    header: header.Header
    tabs: gr.Tabs
    inspect: tab_inspect.InspectTab
    ablations: tab_ablations.AblationsTab
    finetune: tab_finetune.FineTuneTab
    evaluate: tab_evaluate.EvaluateTab


def refresh(top: header.Header, base: gr.Dropdown, sessions: Sessions, request: gr.Request | None = None):
    """On page load: the checkpoints this page may use (shared ones, its own fine-tunes) in the picker and in
    Fine-tune's "Start from" list ``base``, and the messages."""
    registry = sessions.registry_for(request)
    return {**tab_finetune.checkpoint_choices(top.checkpoint, base, registry), top.banner: header.banner(registry)}


def close_session(sessions: Sessions, request: gr.Request | None = None) -> None:
    """The page was closed or reloaded: stop its fine-tune, forget its models (its folder is cleaned up later)."""
    sessions.close(request)


def build_demo(cfg: AppConfig) -> gr.Blocks:
    sessions = cfg.sessions
    with gr.Blocks(title=cfg.title) as demo:
        top = header.build(cfg)
        inspect_state = gr.State(None)  # a tab_inspect.InspectState once an image was inspected
        with gr.Tabs(elem_id="rdx-tabs") as tabs:
            with gr.Tab("Inspect", id="inspect", elem_id="rdx-tab-inspect"):
                inspect = tab_inspect.build(cfg, inspect_state)
            with gr.Tab("Ablations", id="ablations", elem_id="rdx-tab-ablations"):
                ablations = tab_ablations.build(cfg)
            with gr.Tab("Fine-tune", id="finetune", elem_id="rdx-tab-finetune"):
                finetune = tab_finetune.build(cfg)
            with gr.Tab("Evaluate", id="evaluate", elem_id="rdx-tab-evaluate"):
                evaluate = tab_evaluate.build(cfg)

        demo.load(
            bind(refresh, top, finetune.base, sessions),
            outputs=[top.checkpoint, finetune.base, top.banner],
            queue=False,
            api_visibility="private",
        )
        demo.load(
            bind(header.describe_selected, sessions),
            inputs=top.checkpoint,
            outputs=top.checkpoint_info,
            queue=False,
            api_visibility="private",
        )
        demo.unload(bind(close_session, sessions))
        tab_inspect.wire(inspect, cfg, top.checkpoint, top.checkpoint_info)
        tab_ablations.wire(ablations, cfg, top.checkpoint, inspect_state)
        tab_finetune.wire(finetune, cfg, top.checkpoint)
        tab_evaluate.wire(evaluate, cfg, top.checkpoint, tabs, inspect.threshold, inspect.view)
    demo.rdx_config = cfg  # for tests and the launcher
    demo.rdx_page = Page(top, tabs, inspect, ablations, finetune, evaluate)
    return demo
