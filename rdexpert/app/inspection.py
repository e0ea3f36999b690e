"""One Inspect result: run the network once on a few images, keep its output, draw it for any threshold.

Why this module exists: Inspect draws a result, and Evaluate opens a clicked row
in Inspect, and Ablations reuses the image selected there; tabs do not import
each other, so the result (:class:`InspectState`), how it is made
(:func:`inspect`) and drawn (:func:`render`) into the Inspect components
(:class:`InspectView`) live here, for every tab to use.

The network's output for the last request is kept in an :class:`InspectState`
(in a ``gr.State``), so moving the threshold slider or picking another result
only redraws pictures from it: the network does not run again.

Uploaded files are checked before they cost memory: the pixel count is read
from the header and an image above :data:`MAX_INSPECT_PIXELS` is refused before
a pixel is decoded. Accepted ones are decoded at full resolution, exactly as the
datasets of evaluation and training decode them (``load_image`` with its default
limit), so an image scores the same in Inspect as in Evaluate's table; to bound
memory, a request's images are decoded and run a few at a time
(:data:`CHUNK_PIXELS` decoded pixels at most, or one image). A truncated or
corrupt file, or any other failure, becomes a message in the page (the traceback
goes to the log).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np

from rdexpert.app import views
from rdexpert.app.common import failure_message
from rdexpert.app.registry import Registry, public_text
from rdexpert.app.uploads import UploadError, UploadLimits, image_size
from rdexpert.checkpoint.folder import CheckpointError, CheckpointInfo
from rdexpert.data import ImageLoadError, load_image, load_mask

log = logging.getLogger(__name__)

MAX_INSPECT_IMAGES = 16
MAX_INSPECT_PIXELS = UploadLimits().max_image_pixels  # the same limit as Fine-tune's: 4096 x 4096
CHUNK_PIXELS = 32 * 1024 * 1024  # decoded pixels held at once (about 100 MB of RGB); one image at least


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
    mask: np.ndarray | None = None  # the ground-truth defect mask when known (a shipped example), bool

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


@dataclass(frozen=True, eq=False)  # components: identity, not value, comparison
class InspectView:
    """The components a result is drawn into; handlers return ``{component: value}`` for them."""

    state: gr.State  # the InspectState
    results: gr.Gallery  # every image's overlay; hidden for one image
    input_image: gr.Image
    fused: gr.Image  # the calibrated map with the contour at the threshold
    scales: tuple[gr.Image, ...]  # one per decoder scale (views.SCALE_NAMES)
    verdict: gr.HTML
    info: gr.Markdown
    message: gr.HTML  # why a request was refused; empty otherwise

    @property
    def drawn(self) -> list:
        """What :func:`render` fills: everything but the state and the message."""
        return [self.results, self.input_image, self.fused, *self.scales, self.verdict, self.info]

    @property
    def outputs(self) -> list:
        """What :func:`inspect` fills: every component."""
        return [self.state, *self.drawn, self.message]


# -- reading and running -------------------------------------------------------------------------
def read_image(path: str | Path, max_pixels: int = MAX_INSPECT_PIXELS) -> np.ndarray:
    """The RGB pixels of an image file, or UploadError with a message for the page.

    The size is checked from the header first (nothing decoded for a refused
    file); then the file is decoded completely, as evaluation decodes it (no
    downscaling below ``max_pixels``: a downscaled decode would shift the score).
    """
    name = Path(path).name
    width, height = image_size(path, name, max_pixels)
    try:
        return load_image(path)
    except (ImageLoadError, OSError, MemoryError) as error:
        log.info("inspect: %s (%dx%d) refused: %s", path, width, height, error)
        reason = "it is truncated or corrupt" if "truncat" in str(error).lower() else "it could not be decoded"
        raise UploadError(f"'{name}' is not an image this app can read: {reason}.") from None


def read_mask(mask) -> np.ndarray | None:
    """A ground-truth mask (a file, or an array kept from an earlier run) as a bool array; None when unreadable."""
    if mask is None or isinstance(mask, np.ndarray):
        return mask
    try:
        return load_mask(mask)
    except (OSError, ValueError, ImageLoadError):
        log.warning("could not read the mask %s", mask)
        return None


def predict_items(registry: Registry, key: str, sources: list, truths: list | None = None,
                  masks: list | None = None) -> InspectState:
    """Run the network once on ``sources`` (paths or arrays); files are read with :func:`read_image`.

    ``truths``: each source's ground truth ("normal", "defective") when known, else None; ``masks``: each
    source's ground-truth mask (a file or an array) when known, else None.
    """
    sizes = []  # every header first: a request with one huge file costs no decoding at all
    for source in sources:
        if isinstance(source, (str, Path)):
            width, height = image_size(source, Path(source).name, MAX_INSPECT_PIXELS)
            sizes.append(width * height)
        else:
            sizes.append(int(np.asarray(source).shape[0] * np.asarray(source).shape[1]))
    was_loaded = registry.is_loaded(key)
    predictor = registry.predictor(key)
    predictions, seconds = [], 0.0
    for chunk in _chunks(list(sources), sizes, CHUNK_PIXELS):
        images = [read_image(source) if isinstance(source, (str, Path)) else source for source in chunk]
        began = time.perf_counter()
        predictions += list(predictor.predict(images))
        seconds += time.perf_counter() - began
        del images  # the full-resolution pixels of this chunk
    items = []
    nothing = [None] * len(sources)
    for source, p, truth, mask in zip(sources, predictions, truths or nothing, masks or nothing):
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
                mask=read_mask(mask),
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


def _chunks(sources: list, sizes: list[int], budget: int) -> list[list]:
    """``sources`` in order, grouped so that a group's pixels stay within ``budget`` (a bigger image alone)."""
    groups, current, total = [], [], 0
    for source, size in zip(sources, sizes):
        if current and total + size > budget:
            groups.append(current)
            current, total = [], 0
        current.append(source)
        total += size
    return groups + ([current] if current else [])


# -- drawing -------------------------------------------------------------------------------------
def render(view: InspectView, state: InspectState | None, threshold: float) -> dict:
    """Every component of ``view.drawn`` from the state: results gallery, input, fused overlay, scale maps,
    verdict html, info markdown.

    An image the checkpoint's out-of-distribution check flags gets a warning above its verdict: the verdict
    is about defects of the trained product, and this image is not that product.
    """
    if state is None or not state.items:
        blank = {view.input_image: None, view.fused: None, **{scale: None for scale in view.scales}}
        return {view.results: gr.Gallery(value=None, visible=False), **blank, view.verdict: "", view.info: ""}
    gallery = []
    for item in state.items:
        verdict = "ANOMALOUS" if item.normalized_score >= threshold else "normal"
        if item.out_of_distribution:
            verdict = views.NOT_THE_PRODUCT
        truth = f" (truth: {item.truth})" if item.truth else ""
        gallery.append(
            (
                views.fused_overlay(item.picture, item.normalized_map, threshold),
                f"{item.name}: {item.normalized_score:.2f} {verdict}{truth}",  # wraps in the page (ui.CSS)
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
        + (" Green outline on the input: the ground-truth defect mask." if item.mask is not None else "")
    )
    ood = bool(item.out_of_distribution)
    verdict = (
        (views.ood_warning_html(state.product, item.ood_score) if ood else "")
        + views.verdict_html(item.normalized_score, threshold, item.score, state.raw_threshold, extra, ood)
        + ("" if ood else views.truth_html(item.truth, item.normalized_score >= threshold))
    )
    return {
        view.results: gr.Gallery(value=gallery, visible=n > 1),
        view.input_image: views.truth_outline(item.picture, item.mask),
        view.fused: views.fused_overlay(item.picture, item.normalized_map, threshold),
        **dict(zip(view.scales, views.scale_overlays(item.picture, item.scale_maps), strict=True)),
        view.verdict: verdict,
        view.info: info,
    }


def refused(view: InspectView, threshold: float, message: str, kind: str) -> dict:
    """Every component of ``view``: no state, nothing drawn, and ``message``."""
    return {view.state: None, **render(view, None, threshold), view.message: views.message_html(message, kind)}


def inspect(
    view: InspectView, registry: Registry, key: str | None, sources: list, threshold: float, truths: list | None = None,
    masks: list | None = None,
) -> dict:
    """Check the request, run the network once, and draw the first image at ``threshold`` (``truths``, ``masks``:
    see :func:`predict_items`): every component of ``view``."""
    if not key:
        return refused(view, threshold, "Choose a checkpoint first (none is loaded).", "warning")
    if not sources:
        return refused(view, threshold, "Upload an image or click an example.", "info")
    if len(sources) > MAX_INSPECT_IMAGES:
        return refused(view, threshold, f"{len(sources)} images: the limit is {MAX_INSPECT_IMAGES} per run.", "error")
    try:
        state = predict_items(registry, key, sources, truths, masks)
    except UploadError as error:
        return refused(view, threshold, str(error), "error")
    except (CheckpointError, KeyError) as error:
        return refused(view, threshold, f"Checkpoint error: {public_text(error)}", "error")
    except Exception as error:
        log.exception("inspect failed (checkpoint %r, %d image(s))", key, len(sources))
        return refused(view, threshold, failure_message(error), "error")
    return {view.state: state, **render(view, state, threshold), view.message: ""}
