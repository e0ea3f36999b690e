"""The Ablations tab: one image under the inference-time switches, and beside the other trained variants.

The switches (reference teacher/expert, GII gate) need no retraining, so every
panel is the same checkpoint run with other arguments; the variants are other
checkpoints of the same category, found in the registry. The image is a clicked
example or the one selected in Inspect (its :class:`InspectState`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from rdexpert.app import views
from rdexpert.app.common import AppConfig, bind, examples_gallery, failure_message, pictures_gallery
from rdexpert.app.diagram import DIAGRAM, DIAGRAM_CAPTION
from rdexpert.app.registry import ABLATION_VARIANTS, Entry, Registry, public_text
from rdexpert.app.inspection import InspectState, read_image
from rdexpert.app.sessions import Sessions
from rdexpert.app.uploads import UploadError
from rdexpert.checkpoint.folder import CheckpointError
from rdexpert.model import GATES, REFERENCES, VARIANTS, capture_gates

log = logging.getLogger(__name__)

WALKTHROUGH = (("teacher", "gated"), ("expert", "gated"), ("teacher", "open"), ("teacher", "closed"))

INTRO = (
    "The same image under the **inference-time switches** of a trained model (no retraining): the "
    "reference the student is compared with (trained **teacher** or frozen **expert**), and the GII "
    "gate (**gated**, **open**: inject all teacher detail, **closed**: inject none). The threshold was "
    "calibrated for teacher + gated, so compare the maps more than the verdicts. Uses the image "
    "selected in Inspect, or click an example."
)


def ablation_source(state: InspectState | None, source):
    """The clicked example, else the image selected in Inspect, else None."""
    if source is not None:
        return source
    if state and state.items:
        return state.current.source
    return None


def pixels(source):
    """What the network runs on: a file read like Inspect reads it (size checked, decoded once), or the array."""
    return read_image(source) if isinstance(source, (str, Path)) else source


def run_setting(predictor, source, reference: str, gate: str):
    """(prediction, calibrated map) of one switch setting."""
    p = predictor.predict(source, reference=reference, gate=gate, backend="torch")  # the gates are captured in torch
    return p, predictor.map_to_normalized(p.anomaly_map)


def panel_text(entry: Entry, p, reference: str, gate: str, extra: str = "") -> str:
    """Score, what the switch does, ``extra`` (the difference from the default), what to look at, stored metrics."""
    word = "anomalous" if p.normalized_score >= 0.5 else "normal"
    parts = [
        f"**{reference} · {gate}** — calibrated score {p.normalized_score:.3f} ({word}), raw {p.score:.4f}.",
        views.SWITCH_TEXT[(reference, gate)],
        extra,
        f"**What to look at:** {views.LOOK_AT[(reference, gate)]}",
        views.setting_metrics_line(entry.info.metrics, reference, gate),
    ]
    note = views.switch_note(entry.variant, reference, gate)
    if note:
        parts.append(f"_{note}_")
    return "\n\n".join(part for part in parts if part)


def one_panel(predictor, entry: Entry, source, reference: str, gate: str):
    """(overlay, markdown) of one switch setting."""
    p, nmap = run_setting(predictor, source, reference, gate)
    return views.fused_overlay(views.at_aspect(p.image, p.original_size), nmap, 0.5), panel_text(entry, p, reference, gate)


def gate_gallery(gates: dict, image_size: int, entry: Entry):
    """(gallery, markdown) of the captured GII gates, coarsest scale first; a sentence when the model has none."""
    if not gates:
        flags = VARIANTS.get(entry.variant)
        skips = views.SKIP_TEXT[flags.skip] if flags else "no GII skips"
        return None, f"Variant `{entry.variant}` has {skips} and so no GII gate: there is no s to show."
    pictures = []
    for s in sorted((t[0, 0].float().cpu().numpy() for t in gates.values()), key=lambda m: m.shape[-1]):
        stride = round(image_size / s.shape[-1])
        pictures.append((views.gate_picture(s), f"s at 1/{stride} (stride {stride}), mean {s.mean():.2f}"))
    return pictures, views.GATE_TEXT


def switch_panels(predictor, entry: Entry, image):
    """The walkthrough's panels [(overlay, markdown)] and the gate gallery of the default setting.

    The default runs once, with the gates captured; every other panel states its difference from it.
    """
    default = WALKTHROUGH[0]
    with capture_gates(predictor.model) as gates:
        p, default_map = run_setting(predictor, image, *default)
    panels = [(views.fused_overlay(views.at_aspect(p.image, p.original_size), default_map, 0.5), panel_text(entry, p, *default))]
    for reference, gate in WALKTHROUGH[1:]:
        p, nmap = run_setting(predictor, image, reference, gate)
        difference = views.difference_line(nmap, default_map)
        panels.append((views.fused_overlay(views.at_aspect(p.image, p.original_size), nmap, 0.5), panel_text(entry, p, reference, gate, difference)))
    return panels, gate_gallery(gates, predictor.image_size, entry)


def variant_comparison(registry: Registry, entry: Entry, source):
    """(gallery, markdown): the same image under each trained variant of ``entry``'s category."""
    found = registry.variants(entry.category)
    if len(found) < 2:
        missing = [v for v in ABLATION_VARIANTS if v not in found]
        return None, (
            f"Only {', '.join(f'`{v}`' for v in found) or 'no'} checkpoint(s) of category "
            f"`{entry.category}` are loaded. Train the others (`rdexpert train --variant "
            f"{missing[0] if missing else 'rd'} ...`) and start the app with `--checkpoints DIR` to compare "
            "the ablation variants here, with their stored metrics."
        )
    gallery, rows = [], {}
    for variant, e in found.items():
        predictor = registry.predictor(e.key)
        p = predictor.predict(source)
        nmap = predictor.map_to_normalized(p.anomaly_map)
        text = views.variant_text(variant)
        gallery.append((views.fused_overlay(views.at_aspect(p.image, p.original_size), nmap, 0.5), f"{variant}: {p.normalized_score:.2f} — {text}"))
        rows[f"`{variant}` ({text})"] = e.metrics
    t = next(iter(found.values())).info.training
    budget = f"`{t.get('backbone', '?')}`, {t.get('image_size', '?')} px, {t.get('iterations', '?')} iterations"
    return gallery, (
        f"Stored test metrics of each variant (%, from its config.json), all trained with the same budget ({budget}; "
        "one seed: differences of about a point are seed noise, see the README's 3-seed ablation):\n\n"
        + views.metrics_markdown(rows, "variant")
    )


def walkthrough(tab: AblationsTab, registry: Registry, key: str | None, state: InspectState | None, source):
    """Every component of ``tab.outputs``: message, the walkthrough's overlays and texts, gates gallery and text,
    custom overlay and text, variants gallery and text."""
    src = ablation_source(state, source)
    if not key or src is None:
        return _blank(tab, views.message_html("Pick an image: inspect one first, or click an example above.", "info"))
    try:
        entry = registry.get(key)
        predictor = registry.predictor(key)
        image = pixels(src)
        panels, (gates, gates_text) = switch_panels(predictor, entry, image)
        variants_gallery, variants_text = variant_comparison(registry, entry, image)
    except UploadError as error:
        return _blank(tab, views.message_html(str(error), "error"))
    except (CheckpointError, KeyError) as error:
        return _blank(tab, views.message_html(f"Checkpoint error: {public_text(error)}", "error"))
    except Exception as error:
        log.exception("ablation walkthrough failed (checkpoint %r)", key)
        return _blank(tab, views.message_html(failure_message(error), "error"))
    custom, custom_text = panels[0]
    name = Path(src).name if isinstance(src, (str, Path)) else "the Inspect image"
    return {
        tab.message: views.message_html(f"Image: {name} · checkpoint: {key} (variant {entry.variant})", "info"),
        **dict(zip(tab.images, [p[0] for p in panels], strict=True)),
        **dict(zip(tab.texts, [p[1] for p in panels], strict=True)),
        tab.gates: gates,
        tab.gates_text: gates_text,
        tab.custom: custom,
        tab.custom_text: custom_text,
        tab.variants: variants_gallery,
        tab.variants_text: variants_text,
    }


def _blank(tab: AblationsTab, message: str) -> dict:
    """Every component of ``tab.outputs`` emptied, and ``message``."""
    pictures = {picture: None for picture in (*tab.images, tab.gates, tab.custom, tab.variants)}
    texts = {text: "" for text in (*tab.texts, tab.gates_text, tab.custom_text, tab.variants_text)}
    return {tab.message: message, **pictures, **texts}


def walkthrough_example(
    tab: AblationsTab,
    sessions: Sessions,
    example_paths: list[str],
    key,
    state,
    evt: gr.SelectData,
    request: gr.Request | None = None,
):
    """A clicked example becomes the tab's image (kept for the radio buttons)."""
    path = example_paths[evt.index]
    return {tab.source: path, **walkthrough(tab, sessions.registry_for(request), key, state, path)}


def walkthrough_inspect(tab: AblationsTab, sessions: Sessions, key, state, request: gr.Request | None = None):
    return {tab.source: None, **walkthrough(tab, sessions.registry_for(request), key, state, None)}


def custom_combination(tab: AblationsTab, registry: Registry, key, state, source, reference: str, gate: str):
    """The chosen switch setting: ``tab.custom`` and ``tab.custom_text``."""
    src = ablation_source(state, source)
    if not key or src is None:
        return {tab.custom: None, tab.custom_text: "Pick an image first."}
    try:
        picture, text = one_panel(registry.predictor(key), registry.get(key), pixels(src), reference, gate)
    except UploadError as error:
        picture, text = None, str(error)
    except (CheckpointError, KeyError) as error:
        picture, text = None, f"Checkpoint error: {public_text(error)}"
    except Exception as error:
        log.exception("ablation panel failed (checkpoint %r)", key)
        picture, text = None, failure_message(error)
    return {tab.custom: picture, tab.custom_text: text}


def custom_selected(
    tab: AblationsTab, sessions: Sessions, key, state, source, reference: str, gate: str,
    request: gr.Request | None = None,
):
    return custom_combination(tab, sessions.registry_for(request), key, state, source, reference, gate)


@dataclass
class AblationsTab:
    source: gr.State  # the clicked example, or None for the Inspect image
    examples: gr.Gallery
    run: gr.Button
    reference: gr.Radio
    gate: gr.Radio
    message: gr.HTML
    images: tuple[gr.Image, ...]  # the walkthrough's overlays, one per WALKTHROUGH setting
    texts: tuple[gr.Markdown, ...]  # and their texts
    gates: gr.Gallery
    gates_text: gr.Markdown
    custom: gr.Image  # the setting chosen with the radio buttons
    custom_text: gr.Markdown
    variants: gr.Gallery
    variants_text: gr.Markdown

    @property
    def outputs(self) -> list:
        """What walkthrough() fills."""
        return [self.message, *self.images, *self.texts, self.gates, self.gates_text, self.custom,
                self.custom_text, self.variants, self.variants_text]


def build(cfg: AppConfig) -> AblationsTab:
    """The tab's components (inside ``gr.Tab``)."""
    with gr.Row():
        gr.Markdown(INTRO)
        if DIAGRAM.is_file():
            gr.Image(str(DIAGRAM), label=DIAGRAM_CAPTION, interactive=False, height=260, elem_id="rdx-abl-diagram")
    source = gr.State(None)
    with gr.Row():
        examples = examples_gallery(cfg, "Examples", "rdx-abl-examples", columns=6, height=130, scale=3)
        run = gr.Button("Run the walkthrough on the Inspect image", elem_id="rdx-abl-run", scale=1)
    message = gr.HTML(elem_id="rdx-abl-message")
    images, texts = [], []
    with gr.Row():
        for k, (ref, gate) in enumerate(WALKTHROUGH):
            with gr.Column(min_width=180):
                images.append(
                    gr.Image(
                        label=f"reference {ref} · GII {gate}",
                        interactive=False,
                        height=220,
                        elem_id=f"rdx-abl-{ref}-{gate}",
                    )
                )
                texts.append(gr.Markdown(elem_id=f"rdx-abl-text-{k}"))
    gr.Markdown("### What the GII gate let through (teacher · gated)")
    with gr.Row():
        gates = pictures_gallery("GII gate s per decoder scale (0..1)", "rdx-abl-gates", columns=2, height=240)
        gates_text = gr.Markdown(elem_id="rdx-abl-gates-text")
    gr.Markdown("### Try any combination")
    with gr.Row():
        with gr.Column(scale=1):
            reference = gr.Radio(list(REFERENCES), value="teacher", label="Reference", elem_id="rdx-abl-reference")
            gate = gr.Radio(list(GATES), value="gated", label="GII gate", elem_id="rdx-abl-gate")
        with gr.Column(scale=1):
            custom = gr.Image(label="Chosen combination", interactive=False, height=260, elem_id="rdx-abl-custom")
        custom_text = gr.Markdown(elem_id="rdx-abl-custom-text")
    gr.Markdown("### Trained variants of this category")
    variants = pictures_gallery(
        "Variants (same image, each with its own calibration)", "rdx-abl-variants", columns=5, height=280
    )
    variants_text = gr.Markdown(elem_id="rdx-abl-variants-text")
    return AblationsTab(source, examples, run, reference, gate, message, tuple(images), tuple(texts), gates,
                        gates_text, custom, custom_text, variants, variants_text)


def wire(tab: AblationsTab, cfg: AppConfig, checkpoint: gr.Dropdown, inspect_state: gr.State) -> None:
    sessions = cfg.sessions
    # internal to the page (they read the Inspect state): not API endpoints
    tab.run.click(
        bind(walkthrough_inspect, tab, sessions),
        [checkpoint, inspect_state],
        [tab.source, *tab.outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
    tab.examples.select(
        bind(walkthrough_example, tab, sessions, cfg.example_paths),
        [checkpoint, inspect_state],
        [tab.source, *tab.outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
    for radio in (tab.reference, tab.gate):
        radio.change(
            bind(custom_selected, tab, sessions),
            [checkpoint, inspect_state, tab.source, tab.reference, tab.gate],
            [tab.custom, tab.custom_text],
            concurrency_id="inspect",
            api_visibility="private",
        )
