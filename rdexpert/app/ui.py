"""The Gradio page: Inspect, Ablations, Fine-tune, Evaluate.

All model work goes through :class:`rdexpert.inference.Predictor` (via the
:class:`~rdexpert.app.registry.Registry`), :mod:`rdexpert.app.finetune` and
:mod:`rdexpert.app.evaluation`; this module only wires them to components.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from ..checkpoint import CheckpointError  # noqa: E402
from . import views  # noqa: E402
from .evaluation import TABLE_HEADERS, NoTestSplit, run_evaluation  # noqa: E402
from .finetune import IMAGE_SIZES, VARIANT_CHOICES, FineTuneJob, FineTuneLimits, FineTuneSettings  # noqa: E402
from .registry import Entry, Registry  # noqa: E402
from .uploads import UploadError, UploadLimits, prepare_dataset  # noqa: E402

MAX_INSPECT_IMAGES = 16
PRETRAINED_CHOICE = "pretrained backbone (defaults)"
REFERENCES = ("teacher", "expert")
GATES = ("gated", "open", "closed")
WALKTHROUGH = (("teacher", "gated"), ("expert", "gated"), ("teacher", "open"), ("teacher", "closed"))

CSS = """
.rdx-verdict {padding: 4px 0}
#rdx-examples .thumbnail-item, #rdx-abl-examples .thumbnail-item {min-width: 96px}
.rdx-small {font-size: 0.9em; color: #555}
"""


@dataclass
class AppConfig:
    """What the page is built from."""

    registry: Registry
    examples: list[tuple[str, str]] = field(default_factory=list)  # (path, caption)
    workdir: Path = Path("runs/app")
    search_roots: list[Path] = field(default_factory=list)  # where relative dataset roots are looked up
    upload_limits: UploadLimits = UploadLimits()
    finetune_limits: FineTuneLimits = FineTuneLimits()
    title: str = "RD with Expert — anomaly detection"


# ------------------------------------------------------------------------------------------------
# Inspect helpers (plain functions of the state, so the slider never runs the network)
# ------------------------------------------------------------------------------------------------
def _check_image(path: str) -> None:
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise UploadError(f"'{Path(path).name}' is not an image this app can read.") from None


def predict_items(registry: Registry, key: str, sources: list) -> dict:
    """Run the network once on ``sources`` (paths or arrays); returns the Inspect state."""
    was_loaded = registry.is_loaded(key)
    predictor = registry.predictor(key)
    began = time.perf_counter()
    predictions = predictor.predict(list(sources))
    seconds = time.perf_counter() - began
    items = []
    for source, p in zip(sources, predictions):
        name = Path(p.path).name if p.path else (Path(source).name if isinstance(source, (str, Path)) else "image")
        items.append(
            {
                "name": name,
                "path": p.path or (str(source) if isinstance(source, (str, Path)) else None),
                "image": p.image,
                "normalized_map": np.asarray(predictor.map_to_normalized(p.anomaly_map), np.float32),
                "scale_maps": [np.asarray(m, np.float32) for m in p.scale_maps],
                "score": float(p.score),
                "normalized_score": float(p.normalized_score),
            }
        )
    return {
        "key": key,
        "items": items,
        "selected": 0,
        "seconds": seconds,
        "device": str(predictor.device),
        "raw_threshold": float(predictor.threshold) if predictor.threshold is not None else None,
        "load_seconds": None if was_loaded else registry.load_seconds(key),
    }


def render_inspect(state: dict | None, threshold: float):
    """(results gallery, input, fused overlay, 3 scale maps, verdict html, info markdown) from the state."""
    empty = (gr.Gallery(value=None, visible=False), None, None, None, None, None, "", "")
    if not state or not state.get("items"):
        return empty
    items = state["items"]
    i = min(int(state.get("selected", 0)), len(items) - 1)
    gallery = []
    for item in items:
        verdict = "ANOMALOUS" if item["normalized_score"] >= threshold else "normal"
        gallery.append(
            (
                views.fused_overlay(item["image"], item["normalized_map"], threshold),
                f"{item['name']}: {item['normalized_score']:.2f} {verdict}",
            )
        )
    item = items[i]
    scales = views.scale_overlays(item["image"], item["scale_maps"])
    n = len(items)
    timing = (
        f"{n} image{'s' if n > 1 else ''} in {state['seconds']:.2f} s ({1000 * state['seconds'] / n:.0f} ms per image)"
    )
    if state.get("load_seconds"):
        timing += f"; model loaded in {state['load_seconds']:.1f} s (first use)"
    extra = f"device <b>{state['device']}</b> · {timing}"
    verdict = views.verdict_html(item["normalized_score"], threshold, item["score"], state.get("raw_threshold"), extra)
    info = (
        f"**{item['name']}** — checkpoint `{state['key']}`. Heat map: calibrated anomaly map (blue 0 … red 1, "
        f"the calibrated threshold is 0.5); white contour: where it crosses the chosen threshold {threshold:.2f}. "
        "Scale maps share one colour range per image (0 … the largest of the three), so their brightness "
        "compares the scales."
    )
    gallery = gr.Gallery(value=gallery, visible=n > 1)
    return (
        gallery,
        views.display(item["image"]),
        views.fused_overlay(item["image"], item["normalized_map"], threshold),
        *scales,
        verdict,
        info,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "model"


# ------------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------------
def build_demo(cfg: AppConfig) -> gr.Blocks:
    registry = cfg.registry
    jobs: dict[str, FineTuneJob] = {}
    evaluations: OrderedDict[str, object] = OrderedDict()
    example_paths = [p for p, _ in cfg.examples]

    def first_choice() -> str | None:
        choices = registry.choices()
        shipped = [k for k in choices if registry.get(k).source == "shipped"]
        return (shipped or choices or [None])[0]

    def banner() -> str:
        parts = []
        if not registry.choices():
            parts.append(
                views.message_html(
                    "No checkpoint could be loaded, so Inspect, Ablations and Evaluate have nothing to run. "
                    "Start the app with --checkpoints DIR or --hub-repo ORG/NAME, or fine-tune a model in the "
                    "Fine-tune tab.",
                    "warning",
                )
            )
        parts += [views.message_html(m, "warning") for m in registry.messages]
        return "".join(parts)

    with gr.Blocks(title=cfg.title) as demo:
        gr.Markdown(
            f"# {cfg.title}\n"
            "Reverse distillation with an **Expert–Teacher–Student** network and **Guided Information Injection** "
            "(GII): a frozen pretrained *expert*, a *teacher* trained to keep normal features close to the expert's "
            "and push defects away, and a *student* that rebuilds anomaly-free features. Where the student cannot "
            "rebuild the teacher's features, the image is anomalous."
        )
        banner_html = gr.HTML(banner(), elem_id="rdx-banner")
        with gr.Row():
            checkpoint = gr.Dropdown(
                registry.choices(),
                value=first_choice(),
                label="Checkpoint",
                info="Used by Inspect, Ablations and Evaluate",
                elem_id="rdx-checkpoint",
                scale=3,
            )
            checkpoint_info = gr.Markdown(elem_id="rdx-checkpoint-info")

        inspect_state = gr.State(None)
        eval_paths = gr.State([])

        with gr.Tabs(elem_id="rdx-tabs") as tabs:
            # -------------------------------- Inspect --------------------------------
            with gr.Tab("Inspect", id="inspect", elem_id="rdx-tab-inspect"):
                with gr.Row():
                    with gr.Column(scale=1):
                        files = gr.File(
                            label=f"Images (one or several, up to {MAX_INSPECT_IMAGES})",
                            file_count="multiple",
                            file_types=["image"],
                            elem_id="rdx-files",
                        )
                        run = gr.Button("Inspect", variant="primary", elem_id="rdx-run")
                        examples = gr.Gallery(
                            cfg.examples,
                            label="Examples (MPDD metal_plate test images) — click one",
                            columns=3,
                            height=260,
                            allow_preview=False,
                            elem_id="rdx-examples",
                            object_fit="cover",
                        )
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
                    with gr.Column(scale=2):
                        verdict = gr.HTML(elem_id="rdx-verdict")
                        with gr.Row():
                            input_image = gr.Image(
                                label="Input (as the model sees it)", interactive=False, elem_id="rdx-input", height=300
                            )
                            fused_image = gr.Image(
                                label="Fused anomaly map + contour at the threshold",
                                interactive=False,
                                elem_id="rdx-fused",
                                height=300,
                            )
                        with gr.Row():
                            scale_images = [
                                gr.Image(label=f"Scale {name}", interactive=False, height=200, elem_id=f"rdx-scale-{k}")
                                for k, name in enumerate(views.SCALE_NAMES)
                            ]
                        inspect_info = gr.Markdown(elem_id="rdx-inspect-info")
                        results = gr.Gallery(
                            label="All results (click one to show it above)",
                            columns=6,
                            height=180,
                            allow_preview=False,
                            elem_id="rdx-results",
                            visible=False,
                            fit_columns=False,
                        )
                        inspect_message = gr.HTML(elem_id="rdx-inspect-message")

            # -------------------------------- Ablations --------------------------------
            with gr.Tab("Ablations", id="ablations", elem_id="rdx-tab-ablations"):
                gr.Markdown(
                    "The same image under the **inference-time switches** of a trained model (no retraining): the "
                    "reference the student is compared with (trained **teacher** or frozen **expert**), and the GII "
                    "gate (**gated**, **open**: inject all teacher detail, **closed**: inject none). The threshold was "
                    "calibrated for teacher + gated, so compare the maps more than the verdicts. Uses the image "
                    "selected in Inspect, or click an example."
                )
                abl_source = gr.State(None)
                with gr.Row():
                    abl_examples = gr.Gallery(
                        cfg.examples,
                        label="Examples",
                        columns=6,
                        height=130,
                        allow_preview=False,
                        elem_id="rdx-abl-examples",
                        object_fit="cover",
                        scale=3,
                    )
                    abl_run = gr.Button("Run the walkthrough on the Inspect image", elem_id="rdx-abl-run", scale=1)
                abl_message = gr.HTML(elem_id="rdx-abl-message")
                abl_images, abl_texts = [], []
                with gr.Row():
                    for k, (ref, gate) in enumerate(WALKTHROUGH):
                        with gr.Column(min_width=180):
                            abl_images.append(
                                gr.Image(
                                    label=f"reference {ref} · GII {gate}",
                                    interactive=False,
                                    height=220,
                                    elem_id=f"rdx-abl-{ref}-{gate}",
                                )
                            )
                            abl_texts.append(gr.Markdown(elem_id=f"rdx-abl-text-{k}"))
                gr.Markdown("### Try any combination")
                with gr.Row():
                    with gr.Column(scale=1):
                        abl_reference = gr.Radio(
                            list(REFERENCES), value="teacher", label="Reference", elem_id="rdx-abl-reference"
                        )
                        abl_gate = gr.Radio(list(GATES), value="gated", label="GII gate", elem_id="rdx-abl-gate")
                    with gr.Column(scale=1):
                        abl_custom = gr.Image(
                            label="Chosen combination", interactive=False, height=260, elem_id="rdx-abl-custom"
                        )
                    abl_custom_text = gr.Markdown(elem_id="rdx-abl-custom-text")
                gr.Markdown("### Trained variants of this category")
                abl_variants = gr.Gallery(
                    label="Variants (same image, each with its own calibration)",
                    columns=5,
                    height=280,
                    allow_preview=False,
                    elem_id="rdx-abl-variants",
                    fit_columns=False,
                    object_fit="contain",
                )
                abl_variants_text = gr.Markdown(elem_id="rdx-abl-variants-text")

            # -------------------------------- Fine-tune --------------------------------
            with gr.Tab("Fine-tune", id="finetune", elem_id="rdx-tab-finetune"):
                ul, fl = cfg.upload_limits, cfg.finetune_limits
                gr.Markdown(
                    "Train a model on **your own normal images** (optionally with defective images, with or without "
                    "masks, to measure it). Upload images, or **one .zip**: images at its top level or in `good/` / "
                    "`normal/` are normal, in `defect/` (`bad/`, `anomaly/`, MVTec `test/<type>/`) defective, in "
                    "`mask/` (`ground_truth/`) masks matched by name (`x.png` or `x_mask.png`). Training starts from "
                    "the pretrained backbone; the threshold is calibrated on held-out normal images at the end, and "
                    "the model becomes selectable above.\n\n"
                    f"**Limits:** {ul.describe()}; {fl.min_iterations}–{fl.max_iterations} iterations. Zips with "
                    "absolute paths, `..` entries, links or non-image files are refused. One fine-tune runs at a "
                    "time (others wait in the queue). On 2 CPU cores an iteration of `full` at 256 px takes about 2 s "
                    "(the default 150 iterations: about 5 minutes); 128 px is about 4x faster. Cancel keeps nothing "
                    "selectable (the partial state stays on disk)."
                )
                with gr.Row():
                    ft_normal = gr.File(
                        label="Normal images or one .zip",
                        file_count="multiple",
                        file_types=["image", ".zip"],
                        elem_id="rdx-ft-normal",
                    )
                    ft_defect = gr.File(
                        label="Defective images (optional)",
                        file_count="multiple",
                        file_types=["image", ".zip"],
                        elem_id="rdx-ft-defect",
                    )
                    ft_masks = gr.File(
                        label="Masks of the defective images (optional)",
                        file_count="multiple",
                        file_types=["image", ".zip"],
                        elem_id="rdx-ft-masks",
                    )
                with gr.Row():
                    ft_base = gr.Dropdown(
                        [PRETRAINED_CHOICE] + registry.choices(),
                        value=PRETRAINED_CHOICE,
                        label="Start from",
                        info="a checkpoint's backbone, variant and image size (not its weights)",
                        elem_id="rdx-ft-base",
                        scale=2,
                    )
                    ft_variant = gr.Dropdown(
                        list(VARIANT_CHOICES), value="full", label="Variant", elem_id="rdx-ft-variant"
                    )
                    ft_size = gr.Dropdown(
                        [int(s) for s in IMAGE_SIZES],
                        value=fl.default_image_size,
                        label="Image size (px)",
                        elem_id="rdx-ft-size",
                    )
                    ft_iterations = gr.Slider(
                        fl.min_iterations,
                        fl.max_iterations,
                        value=fl.default_iterations,
                        step=1,
                        label="Iterations",
                        elem_id="rdx-ft-iterations",
                    )
                    ft_name = gr.Textbox(value="my-parts", label="Name", elem_id="rdx-ft-name")
                with gr.Row():
                    ft_start = gr.Button("Start fine-tuning", variant="primary", elem_id="rdx-ft-start")
                    ft_cancel = gr.Button("Cancel", variant="stop", elem_id="rdx-ft-cancel")
                ft_status = gr.HTML(elem_id="rdx-ft-status")
                ft_plot = gr.Plot(label="Loss", elem_id="rdx-ft-plot")
                ft_metrics = gr.Markdown(elem_id="rdx-ft-metrics")
                ft_download = gr.File(label="Checkpoint folder (zip)", interactive=False, elem_id="rdx-ft-download")

            # -------------------------------- Evaluate --------------------------------
            with gr.Tab("Evaluate", id="evaluate", elem_id="rdx-tab-evaluate"):
                gr.Markdown(
                    "Score the selected checkpoint on its labelled test images (its config's dataset root "
                    "and category, when that folder is on this machine; for a fine-tuned model, its "
                    "held-out and defective uploads). Click a row to open that image in Inspect. The first evaluation "
                    "of a checkpoint runs the network on every image (MPDD metal_plate, 107 images at 256 px: "
                    "about half a minute on 2 CPU cores); later ones are cached."
                )
                ev_run = gr.Button("Evaluate the selected checkpoint", variant="primary", elem_id="rdx-ev-run")
                ev_summary = gr.Markdown(elem_id="rdx-ev-summary")
                with gr.Row():
                    ev_roc = gr.Plot(label="ROC", elem_id="rdx-ev-roc")
                    ev_hist = gr.Plot(label="Score histogram", elem_id="rdx-ev-hist")
                ev_table = gr.Dataframe(
                    headers=TABLE_HEADERS,
                    interactive=False,
                    elem_id="rdx-ev-table",
                    max_height=420,
                    label="Per image (highest score first)",
                )

        inspect_outputs = [
            inspect_state,
            results,
            input_image,
            fused_image,
            *scale_images,
            verdict,
            inspect_info,
            inspect_message,
        ]

        # ------------------------------------------------------------------ handlers: header
        def describe(key):
            if not key:
                return "_no checkpoint selected_"
            entry = registry.get(key)
            text = entry.describe()
            if entry.metrics:
                m = entry.metrics
                shown = ", ".join(
                    f"{views.METRIC_NAMES[k].replace('@', '&#64;')} {100 * m[k]:.1f}"
                    for k in views.METRIC_NAMES
                    if k in m
                )
                text += f"<br>stored metrics: {shown}"
            return text

        def refresh():
            choices = registry.choices()
            return (gr.Dropdown(choices=choices), gr.Dropdown(choices=[PRETRAINED_CHOICE] + choices), banner())

        demo.load(refresh, outputs=[checkpoint, ft_base, banner_html], queue=False)
        demo.load(describe, inputs=checkpoint, outputs=checkpoint_info, queue=False)

        # ------------------------------------------------------------------ handlers: inspect
        def inspect(key, sources, thr):
            if not key:
                return (
                    None,
                    *render_inspect(None, thr),
                    views.message_html("Choose a checkpoint first (none is loaded).", "warning"),
                )
            if not sources:
                return (
                    None,
                    *render_inspect(None, thr),
                    views.message_html("Upload an image or click an example.", "info"),
                )
            if len(sources) > MAX_INSPECT_IMAGES:
                return (
                    None,
                    *render_inspect(None, thr),
                    views.message_html(f"{len(sources)} images: the limit is {MAX_INSPECT_IMAGES} per run.", "error"),
                )
            try:
                for s in sources:
                    if isinstance(s, (str, Path)):
                        _check_image(str(s))
                state = predict_items(registry, key, sources)
            except UploadError as error:
                return (None, *render_inspect(None, thr), views.message_html(str(error), "error"))
            except (CheckpointError, KeyError) as error:
                return (None, *render_inspect(None, thr), views.message_html(f"Checkpoint error: {error}", "error"))
            return (state, *render_inspect(state, thr), "")

        def inspect_files(key, uploaded, thr):
            paths = [
                str(f if isinstance(f, (str, Path)) else getattr(f, "path", None) or f.name) for f in (uploaded or [])
            ]
            return inspect(key, paths, thr)

        def inspect_example(key, thr, evt: gr.SelectData):
            return inspect(key, [example_paths[evt.index]], thr)

        def rerender(state, thr):
            return render_inspect(state, thr)

        def select_result(state, thr, evt: gr.SelectData):
            if state:
                state = {**state, "selected": int(evt.index)}
            return (state, *render_inspect(state, thr))

        def change_checkpoint(key, state, thr):
            description = describe(key)
            if state and state.get("items") and key:
                sources = [it["path"] if it["path"] else it["image"] for it in state["items"]]
                out = inspect(key, sources, thr)
                if out[0] is not None:
                    out[0]["selected"] = min(state.get("selected", 0), len(out[0]["items"]) - 1)
                    out = (out[0], *render_inspect(out[0], thr), out[-1])
                return (description, *out)
            return (description, *([gr.skip()] * len(inspect_outputs)))

        run.click(inspect_files, [checkpoint, files, threshold], inspect_outputs, concurrency_id="inspect")
        examples.select(inspect_example, [checkpoint, threshold], inspect_outputs, concurrency_id="inspect")
        threshold.change(
            rerender, [inspect_state, threshold], inspect_outputs[1:-1], queue=False, show_progress="hidden"
        )
        results.select(
            select_result, [inspect_state, threshold], inspect_outputs[:-1], queue=False, show_progress="hidden"
        )
        checkpoint.change(
            change_checkpoint,
            [checkpoint, inspect_state, threshold],
            [checkpoint_info, *inspect_outputs],
            concurrency_id="inspect",
        )

        # ------------------------------------------------------------------ handlers: ablations
        def ablation_source(state, source):
            if source is not None:
                return source
            if state and state.get("items"):
                item = state["items"][min(state.get("selected", 0), len(state["items"]) - 1)]
                return item["path"] or item["image"]
            return None

        def one_panel(predictor, entry, source, reference, gate):
            variant = entry.variant
            p = predictor.predict(source, reference=reference, gate=gate)
            nmap = predictor.map_to_normalized(p.anomaly_map)
            word = "anomalous" if p.normalized_score >= 0.5 else "normal"
            text = (
                f"**{reference} · {gate}** — calibrated score {p.normalized_score:.3f} ({word}), "
                f"raw {p.score:.4f}.\n\n{views.SWITCH_TEXT[(reference, gate)]}"
            )
            stored = views.setting_metrics_line(entry.config, reference, gate)
            if stored:
                text += f"\n\n{stored}"
            note = views.switch_note(variant, reference, gate)
            if note:
                text += f"\n\n_{note}_"
            return views.fused_overlay(p.image, nmap, 0.5), text

        def walkthrough(key, state, source):
            blank = [None] * len(WALKTHROUGH) + [""] * len(WALKTHROUGH)
            src = ablation_source(state, source)
            if not key or src is None:
                return (
                    views.message_html("Pick an image: inspect one first, or click an example above.", "info"),
                    *blank,
                    None,
                    "",
                    None,
                    "",
                )
            try:
                entry = registry.get(key)
                predictor = registry.predictor(key)
                panels = [one_panel(predictor, entry, src, r, g) for r, g in WALKTHROUGH]
                variants_gallery, variants_text = variant_comparison(entry, src)
            except (CheckpointError, KeyError) as error:
                return (views.message_html(f"Checkpoint error: {error}", "error"), *blank, None, "", None, "")
            custom, custom_text = panels[0]
            name = Path(src).name if isinstance(src, (str, Path)) else "the Inspect image"
            return (
                views.message_html(f"Image: {name} · checkpoint: {key} (variant {entry.variant})", "info"),
                *[p[0] for p in panels],
                *[p[1] for p in panels],
                custom,
                custom_text,
                variants_gallery,
                variants_text,
            )

        def variant_comparison(entry: Entry, src):
            found = registry.variants(entry.category)
            if len(found) < 2:
                missing = [v for v in ("rd", "rd_expert", "rd_gii", "full") if v not in found]
                return None, (
                    f"Only {', '.join(f'`{v}`' for v in found) or 'no'} checkpoint(s) of category "
                    f"`{entry.category}` are loaded. Train the others (`rdexpert train --variant "
                    f"{missing[0] if missing else 'rd'} ...`) and start the app with `--checkpoints DIR` to compare "
                    "the ablation variants here, with their stored metrics."
                )
            gallery, rows = [], {}
            for variant, e in found.items():
                predictor = registry.predictor(e.key)
                p = predictor.predict(src)
                nmap = predictor.map_to_normalized(p.anomaly_map)
                gallery.append(
                    (
                        views.fused_overlay(p.image, nmap, 0.5),
                        f"{variant}: {p.normalized_score:.2f} — {views.VARIANT_TEXT.get(variant, '')}",
                    )
                )
                rows[f"`{variant}` ({views.VARIANT_TEXT.get(variant, '')})"] = e.metrics
            return gallery, (
                "Stored test metrics of each variant (%, from its config.json):\n\n"
                + views.metrics_markdown(rows, "variant")
            )

        def custom_combination(key, state, source, reference, gate):
            src = ablation_source(state, source)
            if not key or src is None:
                return None, "Pick an image first."
            try:
                entry = registry.get(key)
                return one_panel(registry.predictor(key), entry, src, reference, gate)
            except (CheckpointError, KeyError) as error:
                return None, f"Checkpoint error: {error}"

        abl_outputs = [
            abl_message,
            *abl_images,
            *abl_texts,
            abl_custom,
            abl_custom_text,
            abl_variants,
            abl_variants_text,
        ]

        def walkthrough_example(key, state, evt: gr.SelectData):
            path = example_paths[evt.index]
            return (path, *walkthrough(key, state, path))

        def walkthrough_inspect(key, state):
            return (None, *walkthrough(key, state, None))

        abl_run.click(
            walkthrough_inspect, [checkpoint, inspect_state], [abl_source, *abl_outputs], concurrency_id="inspect"
        )
        abl_examples.select(
            walkthrough_example, [checkpoint, inspect_state], [abl_source, *abl_outputs], concurrency_id="inspect"
        )
        for radio in (abl_reference, abl_gate):
            radio.change(
                custom_combination,
                [checkpoint, inspect_state, abl_source, abl_reference, abl_gate],
                [abl_custom, abl_custom_text],
                concurrency_id="inspect",
            )

        # ------------------------------------------------------------------ handlers: fine-tune
        def finetune(normal, defect, masks, base, variant, size, iterations, name, request: gr.Request):
            session = getattr(request, "session_hash", None) or "local"
            job_id = f"{_slug(name)}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            if not normal:
                yield (views.message_html("Upload normal images (or a .zip) first.", "error"), None, "", None)
                return
            try:
                dataset = prepare_dataset(cfg.workdir / "uploads" / job_id, normal, defect, masks, cfg.upload_limits)
            except UploadError as error:
                yield (views.message_html(f"Upload refused: {error}", "error"), None, "", None)
                return
            if base and base != PRETRAINED_CHOICE:
                model = (registry.get(base).config or {}).get("model", {})
                backbone, variant, size = (
                    model.get("backbone"),
                    model.get("variant", variant),
                    model.get("image_size", size),
                )
                origin = f"settings of `{base}`"
            else:
                backbone, origin = None, "the pretrained backbone"
            settings = FineTuneSettings(
                name=_slug(name),
                variant=variant,
                backbone=backbone,
                image_size=int(size),
                iterations=int(iterations),
                device=registry.device,
            )
            try:
                settings.validate(cfg.finetune_limits)
            except ValueError as error:
                yield (views.message_html(str(error), "error"), None, "", None)
                return
            job = FineTuneJob(settings, dataset, cfg.workdir / "finetuned" / job_id)
            previous = jobs.get(session)
            if previous is not None and previous.running:
                previous.cancel()
            jobs[session] = job
            job.start()
            intro = (
                f"Accepted {dataset.summary()}. Training from {origin}: variant {variant}, {int(size)} px, "
                f"{int(iterations)} iterations."
            )
            try:
                last_plot = -1.0
                while job.running:
                    snap = job.snapshot()
                    plot = gr.skip()
                    if time.perf_counter() - last_plot > 2.0 and snap["history"]["iteration"]:
                        plot, last_plot = views.loss_figure(snap["history"]), time.perf_counter()
                    yield (
                        views.progress_html(snap["iteration"], snap["iterations"], snap["status"], snap["elapsed"])
                        + f'<div class="rdx-small">{intro}</div>',
                        plot,
                        gr.skip(),
                        gr.skip(),
                    )
                    time.sleep(0.5)
            finally:
                if job.running:  # the page went away: stop the training thread too
                    job.cancel()
            snap = job.snapshot()
            plot = views.loss_figure(snap["history"]) if snap["history"]["iteration"] else None
            progress = views.progress_html(snap["iteration"], snap["iterations"], snap["status"], snap["elapsed"])
            if job.status == "cancelled":
                yield (
                    progress + views.message_html(f"Cancelled at iteration {snap['iteration']}. {intro}", "warning"),
                    plot,
                    "",
                    None,
                )
                return
            if job.status != "done":
                yield (progress + views.message_html(f"Fine-tuning failed: {job.error}", "error"), plot, "", None)
                return
            entry = registry.add_local(job.out, source="fine-tuned", name=settings.name)
            entry.eval_samples, entry.archive = job.eval_samples or None, job.archive
            calibration = (entry.config or {}).get("calibration") or {}
            thr = calibration.get("threshold")
            text = (
                f"**Finished**: `{entry.key}` is now selectable in the checkpoint list. Threshold calibrated on "
                f"{len(calibration.get('holdout_scores', []))} held-out normal image(s): raw "
                f"{thr:.4f}."
                if thr is not None
                else f"**Finished**: `{entry.key}` (no threshold calibrated)."
            )
            if snap["metrics"]:
                text += (
                    f"\n\nMetrics on {len(job.eval_samples)} labelled images (held-out normal + uploaded "
                    "defective):\n\n" + views.metrics_markdown({entry.key: snap["metrics"]})
                )
            elif dataset.defect:
                text += "\n\nNo metrics: the evaluation needs normal and defective images."
            else:
                text += "\n\nNo metrics: upload defective images to measure the model."
            yield (
                progress + views.message_html(f"Done in {snap['elapsed']:.0f} s. {intro}", "ok"),
                plot,
                text,
                str(job.archive),
            )

        def finetune_done():
            choices = registry.choices()
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=[PRETRAINED_CHOICE] + choices)

        def cancel(request: gr.Request):
            job = jobs.get(getattr(request, "session_hash", None) or "local")
            if job is None or not job.running:
                return views.message_html("No fine-tune is running in this session.", "info")
            job.cancel()
            return views.message_html(
                "Cancelling: the run stops after the current iteration and saves its state.", "warning"
            )

        ft_event = ft_start.click(
            finetune,
            [ft_normal, ft_defect, ft_masks, ft_base, ft_variant, ft_size, ft_iterations, ft_name],
            [ft_status, ft_plot, ft_metrics, ft_download],
            concurrency_id="finetune",
            concurrency_limit=1,
            show_progress="minimal",
        )
        ft_event.then(finetune_done, outputs=[checkpoint, ft_base], queue=False)
        ft_cancel.click(cancel, outputs=ft_status, queue=False)

        # ------------------------------------------------------------------ handlers: evaluate
        def evaluate_checkpoint(key):
            nothing = (None, None, None, [])
            if not key:
                return ("Choose a checkpoint first.", *nothing)
            try:
                entry = registry.get(key)
                view = evaluations.get(key)
                if view is None:
                    view = run_evaluation(key, entry, registry.predictor(key), cfg.search_roots)
                    evaluations[key] = view
                    while len(evaluations) > 3:
                        evaluations.popitem(last=False)
            except (NoTestSplit, CheckpointError, KeyError) as error:
                return (f"**Cannot evaluate** `{key}`: {error}", *nothing)
            n = len(view.paths)
            summary = (
                f"**{key}** on the {view.description}. {n} images in {view.seconds:.1f} s on {view.device}; "
                f"accuracy at the calibrated threshold: {100 * view.accuracy():.1f}%.\n\n"
                + views.metrics_markdown({key: view.metrics})
            )
            roc = views.roc_figure(view.scores, view.labels, view.maps, view.masks, view.metrics)
            hist = views.histogram_figure(view.normalized, view.labels)
            return summary, roc, hist, view.table(), view.ordered_paths()

        def open_row(key, paths, thr, evt: gr.SelectData):
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            if not paths or row is None or row >= len(paths):
                return (gr.skip(), *([gr.skip()] * len(inspect_outputs)))
            return (gr.Tabs(selected="inspect"), *inspect(key, [paths[row]], thr))

        ev_run.click(
            evaluate_checkpoint,
            checkpoint,
            [ev_summary, ev_roc, ev_hist, ev_table, eval_paths],
            concurrency_id="inspect",
        )
        ev_table.select(
            open_row, [checkpoint, eval_paths, threshold], [tabs, *inspect_outputs], concurrency_id="inspect"
        )
    demo.rdx_config = cfg  # for tests and the launcher
    return demo
