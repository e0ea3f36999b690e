"""The Inspect tab: run the network once on a few images, then redraw for any threshold.

The network's output for the last request is kept in an :class:`InspectState`
(in a ``gr.State``), so moving the threshold slider or picking another result
only redraws pictures from it: the network does not run again.

Uploaded files are checked before they cost memory: the pixel count is read
from the header and an image above :data:`MAX_INSPECT_PIXELS` is refused before
a pixel is decoded; accepted ones are decoded once, downscaled while decoding
where the format allows (JPEG draft mode) to :data:`DECODE_PIXELS`, which is
still far more than the model's input size. A truncated or corrupt file, or any
other failure, becomes a message in the page (the traceback goes to the log).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np

from rdexpert.app import views
from rdexpert.app.common import AppConfig, bind, examples_gallery, failure_message
from rdexpert.app.header import describe
from rdexpert.app.registry import Registry, public_text
from rdexpert.app.sessions import Sessions
from rdexpert.app.uploads import UploadError, UploadLimits, image_size
from rdexpert.checkpoint.folder import CheckpointError, CheckpointInfo
from rdexpert.data import ImageLoadError, load_image

log = logging.getLogger(__name__)

MAX_INSPECT_IMAGES = 16
MAX_INSPECT_PIXELS = UploadLimits().max_image_pixels  # the same limit as Fine-tune's: 4096 x 4096
DECODE_PIXELS = 1024 * 1024  # larger accepted images are downscaled while decoding (the model sees <= 256 px)


@dataclass(frozen=True, eq=False)  # numpy fields: identity, not value, comparison
class InspectItem:
    """One image's result, as much of it as the page redraws from."""

    name: str
    path: str | None  # the file, when the image came from one
    image: np.ndarray  # the input as the network saw it (padding cut off), the maps align with it
    normalized_map: np.ndarray  # calibrated anomaly map: 0.5 is the calibrated threshold
    scale_maps: list[np.ndarray]
    score: float  # raw
    normalized_score: float  # calibrated
    out_of_distribution: bool | None = None  # not the trained product at all; None: the checkpoint has no check
    ood_score: float | None = None  # out-of-distribution distance / threshold
    original_size: tuple[int, int] | None = None  # (height, width) as uploaded: pictures are drawn at this aspect
    truth: str | None = None  # the ground truth when known (an example): "normal" or "defective"

    @property
    def picture(self) -> np.ndarray:
        """The input as the page shows it: at its own aspect ratio, not the network's square."""
        return views.at_aspect(self.image, self.original_size)
    @property
    def source(self) -> str | np.ndarray:
        """What to run the network on again (another checkpoint, the ablations)."""
        return self.path or self.image


@dataclass(frozen=True, eq=False)  # numpy fields: identity, not value, comparison
class InspectState:
    """The last Inspect run: every image's result and which one is shown."""

    key: str  # the checkpoint
    items: list[InspectItem]
    seconds: float  # network time for all items
    device: str
    raw_threshold: float | None
    load_seconds: float | None  # set when this run loaded the model
    selected: int = 0
    product: str | None = None  # the category the checkpoint was trained on, for the out-of-distribution warning

    @property
    def current(self) -> InspectItem:
        return self.items[min(int(self.selected), len(self.items) - 1)]

    def select(self, index: int) -> InspectState:
        return replace(self, selected=min(int(index), len(self.items) - 1))


# -- plain functions of the state ----------------------------------------------------------------
def read_image(path: str | Path, max_pixels: int = MAX_INSPECT_PIXELS) -> np.ndarray:
    """The RGB pixels of an image file, or UploadError with a message for the page.

    The size is checked from the header first (nothing decoded for a refused
    file); then the file is decoded completely, downscaled while decoding when
    larger than :data:`DECODE_PIXELS` (JPEG draft mode, see ``load_image``).
    """
    name = Path(path).name
    width, height = image_size(path, name, max_pixels)
    try:
        return load_image(path, max_pixels=DECODE_PIXELS)
    except (ImageLoadError, OSError, MemoryError) as error:
        log.info("inspect: %s (%dx%d) refused: %s", path, width, height, error)
        reason = "it is truncated or corrupt" if "truncat" in str(error).lower() else "it could not be decoded"
        raise UploadError(f"'{name}' is not an image this app can read: {reason}.") from None


def check_image(path: str) -> None:
    """Refuse a file the network cannot read (too many pixels, not an image, truncated) before it runs."""
    read_image(path)


def predict_items(registry: Registry, key: str, sources: list, truths: list | None = None) -> InspectState:
    """Run the network once on ``sources`` (paths or arrays); files are read with :func:`read_image`.

    ``truths``: each source's ground truth ("normal", "defective") when known, else None.
    """
    files = [source for source in sources if isinstance(source, (str, Path))]
    for path in files:  # every header first: a request with one huge file costs no decoding at all
        image_size(path, Path(path).name, MAX_INSPECT_PIXELS)
    images = [read_image(source) if isinstance(source, (str, Path)) else source for source in sources]
    was_loaded = registry.is_loaded(key)
    predictor = registry.predictor(key)
    began = time.perf_counter()
    predictions = predictor.predict(list(images))
    seconds = time.perf_counter() - began
    items = []
    for source, p, truth in zip(sources, predictions, truths or [None] * len(sources)):
        from_file = isinstance(source, (str, Path))
        items.append(
            InspectItem(
                name=Path(source).name if from_file else "image",
                path=str(source) if from_file else None,
                image=p.image,
                normalized_map=np.asarray(predictor.map_to_normalized(p.anomaly_map), np.float32),
                scale_maps=[np.asarray(m, np.float32) for m in p.scale_maps],
                score=float(p.score),
                normalized_score=float(p.normalized_score),
                out_of_distribution=p.out_of_distribution,
                ood_score=p.ood_score,
                original_size=p.original_size,
                truth=truth,
            )
        )
    return InspectState(
        key=key,
        items=items,
        seconds=seconds,
        device=str(predictor.device),
        raw_threshold=float(predictor.threshold) if predictor.threshold is not None else None,
        load_seconds=None if was_loaded else registry.load_seconds(key),
        product=CheckpointInfo.from_config(predictor.config).category,
    )


def render_inspect(state: InspectState | None, threshold: float):
    """(results gallery, input, fused overlay, 3 scale maps, verdict html, info markdown) from the state.

    An image the checkpoint's out-of-distribution check flags gets a warning above its verdict: the verdict
    is about defects of the trained product, and this image is not that product.
    """
    if state is None or not state.items:
        return (gr.Gallery(value=None, visible=False), None, None, None, None, None, "", "")
    gallery = []
    for item in state.items:
        verdict = "ANOMALOUS" if item.normalized_score >= threshold else "normal"
        if item.out_of_distribution:
            verdict = "NOT THE TRAINED PRODUCT"
        truth = f" (truth: {item.truth})" if item.truth else ""
        gallery.append(
            (
                views.fused_overlay(item.picture, item.normalized_map, threshold),
                f"{item.name}: {item.normalized_score:.2f} {verdict}{truth}",
            )
        )
    item = state.current
    n = len(state.items)
    timing = f"{n} image{'s' if n > 1 else ''} in {state.seconds:.2f} s ({1000 * state.seconds / n:.0f} ms per image)"
    if state.load_seconds:
        timing += f"; model loaded in {state.load_seconds:.1f} s (first use)"
    extra = f"device <b>{state.device}</b> · {timing}"
    info = (
        f"**{item.name}** — checkpoint `{state.key}`. Heat map: calibrated anomaly map (blue 0 … red 1, "
        f"the calibrated threshold is 0.5); white contour: where it crosses the chosen threshold {threshold:.2f}. "
        "Scale maps share one colour range per image (0 … the largest of the three), so their brightness "
        "compares the scales."
    )
    return (
        gr.Gallery(value=gallery, visible=n > 1),
        views.display(item.picture),
        views.fused_overlay(item.picture, item.normalized_map, threshold),
        *views.scale_overlays(item.picture, item.scale_maps),
        (views.ood_warning_html(state.product, item.ood_score) if item.out_of_distribution else "")
        + views.verdict_html(item.normalized_score, threshold, item.score, state.raw_threshold, extra)
        + views.truth_html(item.truth, item.normalized_score >= threshold),
        info,
    )


# -- handlers: each returns (state, *render_inspect(...), message) -------------------------------
OUTPUT_COUNT = 10  # state + the 8 pictures/texts of render_inspect + the message


def _refused(threshold: float, message: str, kind: str):
    return (None, *render_inspect(None, threshold), views.message_html(message, kind))


def inspect(registry: Registry, key: str | None, sources: list, threshold: float, truths: list | None = None):
    """Check the request, run the network once, and draw the first image at ``threshold`` (``truths``: see
    :func:`predict_items`)."""
    if not key:
        return _refused(threshold, "Choose a checkpoint first (none is loaded).", "warning")
    if not sources:
        return _refused(threshold, "Upload an image or click an example.", "info")
    if len(sources) > MAX_INSPECT_IMAGES:
        return _refused(threshold, f"{len(sources)} images: the limit is {MAX_INSPECT_IMAGES} per run.", "error")
    try:
        state = predict_items(registry, key, sources, truths)
    except UploadError as error:
        return _refused(threshold, str(error), "error")
    except (CheckpointError, KeyError) as error:
        return _refused(threshold, f"Checkpoint error: {public_text(error)}", "error")
    except Exception as error:
        log.exception("inspect failed (checkpoint %r, %d image(s))", key, len(sources))
        return _refused(threshold, failure_message(error), "error")
    return (state, *render_inspect(state, threshold), "")


def uploaded_paths(uploaded) -> list[str]:
    return [str(f if isinstance(f, (str, Path)) else getattr(f, "path", None) or f.name) for f in (uploaded or [])]


def inspect_files(sessions: Sessions, key: str | None, uploaded, threshold: float, request: gr.Request | None = None):
    return inspect(sessions.registry_for(request), key, uploaded_paths(uploaded), threshold)


def example_truth(caption: str) -> str:
    """An example's ground truth from its caption ("defective: train_00066" -> "defective", rdexpert.app.server)."""
    return caption.partition(":")[0].strip()


def inspect_example(
    sessions: Sessions,
    examples: list[tuple[str, str]],
    key,
    threshold: float,
    evt: gr.SelectData,
    request: gr.Request | None = None,
):
    """A clicked example (``examples``: (path, caption) pairs): inspected with its ground truth shown."""
    path, caption = examples[evt.index]
    return inspect(sessions.registry_for(request), key, [path], threshold, [example_truth(caption)])


def rerender(state: InspectState | None, threshold: float):
    """The slider moved: redraw from the state, without the network."""
    return render_inspect(state, threshold)


def select_result(state: InspectState | None, threshold: float, evt: gr.SelectData):
    if state:
        state = state.select(evt.index)
    return (state, *render_inspect(state, threshold))


def change_checkpoint(
    sessions: Sessions, key: str | None, state: InspectState | None, threshold: float, request: gr.Request | None = None
):
    """A new checkpoint: describe it, and rerun the images on screen with it (same one selected)."""
    registry = sessions.registry_for(request)
    description = describe(registry, key)
    if state and state.items and key:
        out = inspect(registry, key, [item.source for item in state.items], threshold, [i.truth for i in state.items])
        if out[0] is not None:
            selected = out[0].select(state.selected)
            out = (selected, *render_inspect(selected, threshold), out[-1])
        return (description, *out)
    return (description, *([gr.skip()] * OUTPUT_COUNT))


# -- the tab -------------------------------------------------------------------------------------
@dataclass
class InspectTab:
    files: gr.File
    run: gr.Button
    examples: gr.Gallery
    threshold: gr.Slider
    outputs: list  # what the handlers above return, in order: state first, message last

    @property
    def state(self) -> gr.State:
        return self.outputs[0]

    @property
    def results(self) -> gr.Gallery:
        return self.outputs[1]


def build(cfg: AppConfig, state: gr.State) -> InspectTab:
    """The tab's components (inside ``gr.Tab``); ``state`` holds the :class:`InspectState`."""
    with gr.Row(elem_id="rdx-inspect-row"):  # on a phone the CSS in ui.py puts the verdict and map first
        with gr.Column(scale=1, elem_id="rdx-inspect-controls"):
            files = gr.File(
                label=f"Images (one or several, up to {MAX_INSPECT_IMAGES}; each at most "
                f"{int(MAX_INSPECT_PIXELS**0.5)}x{int(MAX_INSPECT_PIXELS**0.5)} pixels)",
                file_count="multiple",
                file_types=["image"],
                elem_id="rdx-files",
                height=120,  # a compact drop zone: on a phone the verdict comes right below it
            )
            run = gr.Button("Inspect", variant="primary", elem_id="rdx-run")
            examples = examples_gallery(
                cfg, "Examples (MPDD metal_plate test images) — click one", "rdx-examples", columns=3, height=260
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
        with gr.Column(scale=2, elem_id="rdx-inspect-results"):
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
                columns=6,
                height=180,
                allow_preview=False,
                elem_id="rdx-results",
                visible=False,
                fit_columns=False,
            )
            message = gr.HTML(elem_id="rdx-inspect-message")
    outputs = [state, results, input_image, fused_image, *scale_images, verdict, info, message]
    assert len(outputs) == OUTPUT_COUNT
    return InspectTab(files, run, examples, threshold, outputs)


def wire(tab: InspectTab, cfg: AppConfig, checkpoint: gr.Dropdown, checkpoint_info: gr.Markdown) -> None:
    sessions, outputs = cfg.sessions, tab.outputs
    # the one intended API endpoint of the tab: inspect uploaded images
    tab.run.click(
        bind(inspect_files, sessions), [checkpoint, tab.files, tab.threshold], outputs, concurrency_id="inspect"
    )
    tab.examples.select(
        bind(inspect_example, sessions, cfg.examples),
        [checkpoint, tab.threshold],
        outputs,
        concurrency_id="inspect",
        api_visibility="private",
    )
    tab.threshold.change(
        bind(rerender),
        [tab.state, tab.threshold],
        outputs[1:-1],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    tab.results.select(
        bind(select_result),
        [tab.state, tab.threshold],
        outputs[:-1],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    checkpoint.change(
        bind(change_checkpoint, sessions),
        [checkpoint, tab.state, tab.threshold],
        [checkpoint_info, *outputs],
        concurrency_id="inspect",
        api_visibility="private",
    )
