"""The Ablations tab: one image under the inference-time switches, and beside the other trained variants.

The switches (reference teacher/expert, GII gate) need no retraining, so every
panel is the same checkpoint run with other arguments; the variants are other
checkpoints of the same product (category), found in the registry, with what their stored metrics show on that
product (:mod:`rdexpert.app.variant_findings`); a table sets every product's variants side by side. The image is a clicked
example or the one selected in Inspect (its :class:`InspectState`).

Every panel says what it shows, and shows what its controls say: the
walkthrough's panels are labelled with their own setting (the first is the
checkpoint's default, what Inspect shows: its default reference, gate gated),
and "Try any combination" always shows the setting its radio buttons hold, also
when the walkthrough reruns on another image or checkpoint. Texts follow the
variant's flags (a variant without GII skips is never said to inject detail).
"""

from __future__ import annotations

import logging
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
    failure_message,
    key_category,
    pictures_gallery,
    reveal,
)
from rdexpert.app.diagram import DIAGRAM, DIAGRAM_CAPTION
from rdexpert.app.examples import ExampleSet
from rdexpert.app.header import first_choice
from rdexpert.app.inspection import InspectState, read_image
from rdexpert.app.registry import Entry, Registry, public_text
from rdexpert.app.sessions import Sessions
from rdexpert.app.uploads import UploadError
from rdexpert.app.variant_findings import products_text, stored_variants_text, variants_heading
from rdexpert.checkpoint.folder import CheckpointError
from rdexpert.data import fit_image
from rdexpert.model import GATES, REFERENCES, VARIANTS, capture_gates

log = logging.getLogger(__name__)

PANELS = 4  # the walkthrough: the default, the other reference, the gate open, the gate closed

INTRO = (
    "The same image under the **inference-time switches** of a trained model (no retraining): the "
    "reference the student is compared with (trained **teacher** or frozen **expert**), and the GII "
    "gate (**gated**, **open**: inject all teacher detail, **closed**: inject none). The first panel is the "
    "checkpoint's default, what Inspect shows; the threshold was calibrated for it, so compare the maps more "
    "than the verdicts. Uses the image selected in Inspect, or click an example."
)


def walkthrough_settings(default_reference: str | None) -> list[tuple[str, str]]:
    """The walkthrough's (reference, gate) settings: the checkpoint's default first, then one switch at a time."""
    reference = default_reference or "teacher"
    other = "expert" if reference == "teacher" else "teacher"
    return [(reference, "gated"), (other, "gated"), (reference, "open"), (reference, "closed")]


def panel_label(reference: str, gate: str) -> str:
    """The caption of a panel's picture: the setting it shows."""
    return f"reference {reference} · GII {gate}"


CUSTOM_LABEL = "Chosen combination: "
EXAMPLES_LABEL = "Examples ({what}): click one"


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
    """Score, what the switch does for this variant, ``extra`` (the difference from the default), what to look
    at, stored metrics."""
    word = "anomalous" if p.normalized_score >= 0.5 else "normal"
    default = entry.info.default_reference
    parts = [
        f"**{reference} · {gate}** — calibrated score {p.normalized_score:.3f} ({word}), raw {p.score:.4f}.",
        views.switch_text(entry.variant, reference, gate, default),
        extra,
        f"**What to look at:** {views.look_at(entry.variant, reference, gate, default)}",
        views.setting_metrics_line(entry.info.metrics, reference, gate),
    ]
    return "\n\n".join(part for part in parts if part)


def draw_panel(entry: Entry, p, nmap, reference: str, gate: str, default_map=None):
    """(overlay, markdown) of one switch setting; with ``default_map``, the text states the difference from it."""
    extra = views.difference_line(nmap, default_map) if default_map is not None else ""
    picture = views.fused_overlay(views.at_aspect(p.image, p.original_size), nmap, 0.5)
    return picture, panel_text(entry, p, reference, gate, extra)


def gate_gallery(gates: dict, image_size: int, entry: Entry, seen=None):
    """(gallery, markdown) of the captured GII gates, coarsest scale first, each over the picture the network saw
    (``seen``) with a colour bar; the captions are in the text (a gallery caption would cover the colour bar).
    A sentence when the model has none."""
    if not gates:
        flags = VARIANTS.get(entry.variant)
        skips = views.SKIP_TEXT[flags.skip] if flags else "no GII skips"
        return None, f"Variant `{entry.variant}` has {skips} and so no GII gate: there is no s to show."
    pictures, lines = [], []
    maps = sorted((t[0, 0].float().cpu().numpy() for t in gates.values()), key=lambda m: m.shape[-1])
    for k, s in enumerate(maps, 1):
        stride = round(image_size / s.shape[-1])
        caption = f"s at 1/{stride} (stride {stride}), mean {s.mean():.2f}"
        pictures.append((views.gate_picture(s, seen), None))
        lines.append(f"{k}. {caption}")
    return pictures, views.GATE_TEXT + "\n\n" + "\n".join(lines)


def switch_panels(predictor, entry: Entry, image):
    """The walkthrough's settings, panels [(overlay, markdown)] and the gate gallery of the default setting,
    and the default map (the custom panel states its difference from it too).

    The default runs once, with the gates captured; every other panel states its difference from it.
    """
    settings = walkthrough_settings(entry.info.default_reference)
    with capture_gates(predictor.model) as gates:
        p, default_map = run_setting(predictor, image, *settings[0])
    panels = [draw_panel(entry, p, default_map, *settings[0])]
    for reference, gate in settings[1:]:
        q, nmap = run_setting(predictor, image, reference, gate)
        panels.append(draw_panel(entry, q, nmap, reference, gate, default_map))
    seen = fit_image(image, predictor.image_size, predictor.model.config.input_fit)  # what the gates cover
    return settings, panels, gate_gallery(gates, predictor.image_size, entry, seen), default_map


def variant_comparison(registry: Registry, entry: Entry, source):
    """(gallery, markdown): the same image under each trained variant of ``entry``'s category."""
    found = registry.variants(entry.category)
    if len(found) < 2:
        return None, stored_variants_text(registry, entry.category)
    gallery = []
    for variant, e in found.items():
        predictor = registry.predictor(e.key)
        p = predictor.predict(source)
        nmap = predictor.map_to_normalized(p.anomaly_map)
        picture = views.fused_overlay(views.at_aspect(p.image, p.original_size), nmap, 0.5)
        gallery.append((picture, f"{variant}: {p.normalized_score:.2f} — {views.variant_text(variant)}"))
    return gallery, stored_variants_text(registry, entry.category)


def custom_panel(tab: AblationsTab, picture, text: str, reference: str, gate: str) -> dict:
    """``tab.custom`` (captioned with its setting) and ``tab.custom_text``."""
    label = CUSTOM_LABEL + panel_label(reference, gate)
    return {tab.custom: gr.Image(value=picture, label=label), tab.custom_text: text}


def walkthrough(tab: AblationsTab, registry: Registry, key: str | None, state: InspectState | None, source,
                reference: str = "teacher", gate: str = "gated"):
    """Every component of ``tab.outputs``: message, the walkthrough's overlays (captioned with their settings) and
    texts, gates gallery and text, the custom panel for the radio buttons' ``reference`` and ``gate``, variants
    gallery and text."""
    src = ablation_source(state, source)
    if not key or src is None:
        return _blank(tab, views.message_html("Pick an image: inspect one first, or click an example above.", "info"))
    try:
        entry = registry.get(key)
        predictor = registry.predictor(key)
        image = pixels(src)
        settings, panels, (gates, gates_text), default_map = switch_panels(predictor, entry, image)
        if (reference, gate) in settings:  # already drawn: the same picture and text
            custom, custom_text = panels[settings.index((reference, gate))]
        else:
            p, nmap = run_setting(predictor, image, reference, gate)
            custom, custom_text = draw_panel(entry, p, nmap, reference, gate, default_map)
        variants_gallery, variants_text = variant_comparison(registry, entry, image)
    except UploadError as error:
        return _blank(tab, views.message_html(str(error), "error"))
    except (CheckpointError, KeyError) as error:
        return _blank(tab, views.message_html(f"Checkpoint error: {public_text(error)}", "error"))
    except Exception as error:
        log.exception("ablation walkthrough failed (checkpoint %r)", key)
        return _blank(tab, views.message_html(failure_message(error), "error"))
    name = Path(src).name if isinstance(src, (str, Path)) else "the Inspect image"
    default = " · ".join(settings[0])
    return {
        tab.message: views.message_html(
            f"Image: {name} · checkpoint: {key} (variant {entry.variant}; default setting {default})", "info"),
        **{image_: gr.Image(value=picture, label=panel_label(*setting))
           for image_, (picture, _), setting in zip(tab.images, panels, settings, strict=True)},
        **dict(zip(tab.texts, [text for _, text in panels], strict=True)),
        tab.gates_title: f"### What the GII gate let through ({default})",
        tab.gates: gates,
        tab.gates_text: gates_text,
        **custom_panel(tab, custom, custom_text, reference, gate),
        tab.variants: variants_gallery,
        tab.variants_text: variants_text,
        tab.shown: key,
    }


def _blank(tab: AblationsTab, message: str) -> dict:
    """Every component of ``tab.outputs`` emptied, and ``message``."""
    pictures = {picture: None for picture in (*tab.images, tab.gates, tab.custom, tab.variants)}
    texts = {text: "" for text in (*tab.texts, tab.gates_text, tab.custom_text, tab.variants_text)}
    return {tab.message: message, **pictures, **texts, tab.shown: None}


def walkthrough_example(
    tab: AblationsTab,
    sessions: Sessions,
    examples: ExampleSet,
    key,
    state,
    reference: str,
    gate: str,
    evt: gr.SelectData,
    request: gr.Request | None = None,
):
    """A clicked example (of the gallery shown for ``key``'s product) becomes the tab's image (kept for the radio
    buttons)."""
    path = clicked_example(sessions, examples, key, evt.index, request).path
    return {tab.source: path, **walkthrough(tab, sessions.registry_for(request), key, state, path, reference, gate)}


def walkthrough_inspect(tab: AblationsTab, sessions: Sessions, key, state, reference: str, gate: str,
                        request: gr.Request | None = None):
    return {tab.source: None, **walkthrough(tab, sessions.registry_for(request), key, state, None, reference, gate)}


def walkthrough_checkpoint(tab: AblationsTab, sessions: Sessions, examples: ExampleSet, key, state, source, shown,
                           reference: str, gate: str, request: gr.Request | None = None):
    """Another checkpoint was picked: panels on screen are redrawn with it (they never show another checkpoint
    than the picker's); nothing on screen: nothing to do (gradio reads an empty dict as one value, so the state is
    returned as it is). An example of another product is not run through this product's model: the panels are
    cleared and the new product's examples offered."""
    if not shown or shown == key:
        return {tab.shown: shown}
    registry = sessions.registry_for(request)
    example, category = examples.find(source), key_category(registry, key)
    if example is not None and example.product != category and examples.known(category):
        text = (f"The image was a {example.product} example and this checkpoint is a {category} model: click one "
                f"of the {category} examples above, or run the walkthrough on the Inspect image.")
        # the product's stored variant metrics stay (product_variants wrote them; this may answer after it)
        return {tab.source: None, **_blank(tab, views.message_html(text, "info")),
                tab.variants_text: stored_variants_text(registry, category)}
    return {tab.source: source, **walkthrough(tab, registry, key, state, source, reference, gate)}


def product_variants(tab: AblationsTab, sessions: Sessions, key, request: gr.Request | None = None) -> dict:
    """Another checkpoint: at once, the stored metrics of its product's variants (the pictures are drawn again
    when the walkthrough reruns)."""
    registry = sessions.registry_for(request)
    category = key_category(registry, key)
    return {tab.variants: None, tab.variants_title: variants_heading(category),
            tab.variants_text: stored_variants_text(registry, category) if category else ""}


def custom_combination(tab: AblationsTab, registry: Registry, key, state, source, reference: str, gate: str):
    """The chosen switch setting: ``tab.custom`` (captioned with it) and ``tab.custom_text``."""
    src = ablation_source(state, source)
    if not key or src is None:
        return {tab.custom: gr.Image(value=None, label=CUSTOM_LABEL + panel_label(reference, gate)),
                tab.custom_text: "Pick an image first."}
    try:
        entry, predictor = registry.get(key), registry.predictor(key)
        image = pixels(src)
        default = walkthrough_settings(entry.info.default_reference)[0]
        p, nmap = run_setting(predictor, image, reference, gate)
        default_map = None if (reference, gate) == default else run_setting(predictor, image, *default)[1]
        picture, text = draw_panel(entry, p, nmap, reference, gate, default_map)
    except UploadError as error:
        picture, text = None, str(error)
    except (CheckpointError, KeyError) as error:
        picture, text = None, f"Checkpoint error: {public_text(error)}"
    except Exception as error:
        log.exception("ablation panel failed (checkpoint %r)", key)
        picture, text = None, failure_message(error)
    return custom_panel(tab, picture, text, reference, gate)


def custom_selected(
    tab: AblationsTab, sessions: Sessions, key, state, source, reference: str, gate: str,
    request: gr.Request | None = None,
):
    return custom_combination(tab, sessions.registry_for(request), key, state, source, reference, gate)


@dataclass
class AblationsTab:
    source: gr.State  # the clicked example, or None for the Inspect image
    shown: gr.State  # the checkpoint whose panels are on screen (None: nothing shown)
    examples: gr.Gallery
    run: gr.Button
    reference: gr.Radio
    gate: gr.Radio
    message: gr.HTML
    images: tuple[gr.Image, ...]  # the walkthrough's overlays, one per walkthrough_settings() setting
    texts: tuple[gr.Markdown, ...]  # and their texts
    gates_title: gr.Markdown
    gates: gr.Gallery
    gates_text: gr.Markdown
    custom: gr.Image  # the setting chosen with the radio buttons
    custom_text: gr.Markdown
    variants_title: gr.Markdown
    variants: gr.Gallery
    variants_text: gr.Markdown
    products: gr.Markdown  # every product's variants side by side

    @property
    def outputs(self) -> list:
        """What walkthrough() fills."""
        return [self.message, *self.images, *self.texts, self.gates_title, self.gates, self.gates_text,
                self.custom, self.custom_text, self.variants, self.variants_text, self.shown]


def build(cfg: AppConfig) -> AblationsTab:
    """The tab's components (inside ``gr.Tab``). Columns have a minimum width, so on a phone they stack and
    every text gets the page's width (a text squeezed beside a picture is unreadable)."""
    gr.Markdown(INTRO, elem_id="rdx-abl-intro")
    if DIAGRAM.is_file():
        # full width, at about its own size: its arrow labels are readable; no label over the picture (it
        # covered the diagram's title), the caption is the text below it
        gr.Image(str(DIAGRAM), show_label=False, interactive=False, elem_id="rdx-abl-diagram",
                 buttons=["fullscreen"])
        gr.Markdown(f"{DIAGRAM_CAPTION} (on a small screen: the full-screen button on the picture)",
                    elem_classes="rdx-small", elem_id="rdx-abl-diagram-caption")
    source, shown = gr.State(None), gr.State(None)
    category = key_category(cfg.registry, first_choice(cfg.registry))
    with gr.Row():
        with gr.Column(scale=3, min_width=300):
            examples = examples_gallery(cfg, category, EXAMPLES_LABEL, "rdx-abl-examples", columns=6, height="auto")
        with gr.Column(scale=1, min_width=200):
            run = gr.Button("Run the walkthrough on the Inspect image", elem_id="rdx-abl-run")
    message = gr.HTML(elem_id="rdx-abl-message")
    images, texts = [], []
    with gr.Row(elem_id="rdx-abl-panels"):
        for k, (ref, gate) in enumerate(walkthrough_settings("teacher")):
            with gr.Column(min_width=220):
                images.append(gr.Image(label=panel_label(ref, gate), interactive=False, height=240,
                                       elem_id=f"rdx-abl-panel-{k}", elem_classes="rdx-abl-panel"))
                texts.append(gr.Markdown(elem_id=f"rdx-abl-text-{k}"))
    gates_title = gr.Markdown("### What the GII gate let through", elem_id="rdx-abl-gates-title")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            gates = pictures_gallery("GII gate s per decoder scale, over the image (colour bar: 0 … 1)",
                                     "rdx-abl-gates", columns=2, height="auto")
        with gr.Column(scale=1, min_width=300):
            gates_text = gr.Markdown(elem_id="rdx-abl-gates-text")
    gr.Markdown("### Try any combination")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            reference = gr.Radio(list(REFERENCES), value="teacher", label="Reference", elem_id="rdx-abl-reference")
            gate = gr.Radio(list(GATES), value="gated", label="GII gate", elem_id="rdx-abl-gate")
        with gr.Column(scale=1, min_width=300):
            custom = gr.Image(label=CUSTOM_LABEL + panel_label("teacher", "gated"), interactive=False, height=260,
                              elem_id="rdx-abl-custom")
        with gr.Column(scale=1, min_width=300):
            custom_text = gr.Markdown(elem_id="rdx-abl-custom-text")
    variants_title = gr.Markdown(variants_heading(category), elem_id="rdx-abl-variants-title")
    variants = pictures_gallery(
        "Variants (same image, each with its own calibration)", "rdx-abl-variants", columns=5, height="auto"
    )
    variants_text = gr.Markdown(stored_variants_text(cfg.registry, category) if category else "",
                                elem_id="rdx-abl-variants-text", elem_classes="rdx-table")
    products = gr.Markdown(products_text(cfg.registry), elem_id="rdx-abl-products", elem_classes="rdx-table")
    return AblationsTab(source, shown, examples, run, reference, gate, message, tuple(images), tuple(texts),
                        gates_title, gates, gates_text, custom, custom_text, variants_title, variants, variants_text,
                        products)


def wire(tab: AblationsTab, cfg: AppConfig, checkpoint: gr.Dropdown, inspect_state: gr.State) -> None:
    sessions = cfg.sessions
    radios = [tab.reference, tab.gate]
    reveal(tab.run, "#rdx-abl-message")  # the answer's top: which image and checkpoint, then the panels
    reveal(tab.examples, "#rdx-abl-message", event="select")
    for radio in radios:
        reveal(radio, "#rdx-abl-custom", event="change")
    # internal to the page (they read the Inspect state): not API endpoints
    tab.run.click(
        bind(walkthrough_inspect, tab, sessions),
        [checkpoint, inspect_state, *radios],
        [tab.source, *tab.outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
    tab.examples.select(
        bind(walkthrough_example, tab, sessions, cfg.examples),
        [checkpoint, inspect_state, *radios],
        [tab.source, *tab.outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
    for radio in radios:
        radio.change(
            bind(custom_selected, tab, sessions),
            [checkpoint, inspect_state, tab.source, *radios],
            [tab.custom, tab.custom_text],
            concurrency_id="inspect",
            trigger_mode="always_last",
            api_visibility="private",
        )
    examples_follow(checkpoint, tab.examples, EXAMPLES_LABEL, sessions, cfg.examples)
    checkpoint.change(
        bind(product_variants, tab, sessions),
        checkpoint,
        [tab.variants, tab.variants_title, tab.variants_text],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    checkpoint.change(
        bind(walkthrough_checkpoint, tab, sessions, cfg.examples),
        [checkpoint, inspect_state, tab.source, tab.shown, *radios],
        [tab.source, *tab.outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
