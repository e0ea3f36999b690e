"""The Fine-tune tab: train on uploaded images in the background and stream progress to the page.

Training is a :class:`~rdexpert.app.finetune.FineTuneJob` (one per browser
session, kept in its :class:`~rdexpert.app.sessions.Session`); the handler here
only validates the upload, starts the job, polls it and turns its snapshots into
progress HTML and a loss plot. Uploads and the result go into the session's
own folder, the fine-tuned model into the session's own registry: other
visitors neither list nor load it, and the page shows its name, never its
path. The zip is offered to that session only, through its download component.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from rdexpert.app import figures, views
from rdexpert.app.checkpoint_zip import CheckpointZipLimits, unpack_checkpoint_zip
from rdexpert.app.common import AppConfig, bind, reveal
from rdexpert.app.finetune import (
    IMAGE_SIZES,
    VARIANT_CHOICES,
    FineTuneJob,
    FineTuneSettings,
)
from rdexpert.app.finetune_text import (
    finished_text,
    intro,
    markdown_bold,
    outcome_text,
    progress_line,
    upload_summary,
)
from rdexpert.app.registry import Registry, public_text
from rdexpert.app.sessions import Sessions, cleanup_workdir
from rdexpert.app.uploads import UploadError, prepare_dataset
from rdexpert.checkpoint.folder import CheckpointError

log = logging.getLogger(__name__)

PRETRAINED_CHOICE = "pretrained backbone (defaults)"
PLOT_SECONDS = 2.0  # the loss plot is redrawn at most this often while training
POLL_SECONDS = 0.5


def slug(text: str) -> str:
    """A name safe for folders and checkpoint keys."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "model"


def checkpoint_choices(checkpoint: gr.Dropdown, base: gr.Dropdown, registry: Registry) -> dict:
    """Fresh choices for the checkpoint picker and the "Start from" list ``base`` (after a fine-tune, on page
    load)."""
    choices = registry.choices()
    return {checkpoint: gr.Dropdown(choices=choices), base: gr.Dropdown(choices=[PRETRAINED_CHOICE] + choices)}


def _settings(registry: Registry, base, warm, variant, size, iterations, name) -> tuple[FineTuneSettings, str]:
    """The run's settings and where they came from: a checkpoint's model settings (and with ``warm`` its trained
    weights), or the choices made."""
    init_from = None
    if base and base != PRETRAINED_CHOICE:
        entry = registry.get(base)
        info = entry.info
        backbone, variant, size = info.backbone, info.variant or variant, info.image_size or size
        origin = f"settings of `{base}`"
        if warm:
            init_from, origin = entry.ref, f"the trained weights of `{base}` (warm start)"
    else:
        backbone, origin = None, "the pretrained backbone"
    settings = FineTuneSettings(
        name=slug(name),
        variant=variant,
        backbone=backbone,
        image_size=int(size),
        iterations=int(iterations),
        device=registry.device,
        init_from=init_from,
    )
    return settings, origin


def offer_download(archive) -> str | None:
    """The zip, copied into gradio's upload cache, for the download component of the session that made it.

    The workdir itself is never served; the copy's folder is named by a keyed
    hash of its content, so only the page it is handed to can name it.
    """
    if archive is None:
        return None
    try:
        from gradio import processing_utils, utils

        return processing_utils.save_file_to_cache(str(archive), cache_dir=utils.get_upload_folder())
    except Exception:
        log.exception("could not offer %s for download", archive)
        return None


def _shown(tab: FineTuneTab, status: str, plot=None, result: str = "", download: str | None = None) -> dict:
    """Every component of ``tab.outputs``."""
    note = views.HEALTH_NOTE if plot is not None and _has_health(plot) else ""
    return {tab.status: status, tab.plot: plot, tab.plot_note: note, tab.metrics: result, tab.download: download}


def _has_health(figure) -> bool:
    return any("AUROC" in (trace.name or "") for trace in getattr(figure, "data", ()))


def finetune(
    tab: FineTuneTab,
    cfg: AppConfig,
    normal,
    defect,
    masks,
    base,
    variant,
    size,
    iterations,
    name,
    warm: bool = False,
    request: gr.Request | None = None,
):
    """Yields ``tab``'s status html, loss plot, result markdown and archive until the job ends (while it runs
    only the status and, now and then, the plot)."""
    session = cfg.sessions.get(request)
    registry = session.registry
    job_id = f"{slug(name)}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    if not normal:
        yield _shown(tab, views.message_html("Upload normal images (or a .zip) first.", "error"))
        return
    try:  # keep the workdir within its budget: finished sessions' folders, oldest first
        max_age = cfg.workdir_max_age_hours
        active = cfg.sessions.active_folders(max_age * 3600 if max_age is not None else None) | {session.folder.name}
        cleanup_workdir(cfg.sessions.root, cfg.workdir_budget_mb, max_age, active=active)
    except Exception:
        log.exception("workdir cleanup failed")
    try:
        dataset = prepare_dataset(session.folder / "uploads" / job_id, normal, defect, masks, cfg.upload_limits)
    except UploadError as error:
        yield _shown(tab, views.message_html(f"Upload refused: {error}", "error"))
        return
    except OSError as error:
        log.exception("could not store an upload in %s", session.folder)
        reason = error.strerror or type(error).__name__
        yield _shown(
            tab,
            views.message_html(
                f"The server could not store your upload ({reason}); try again later or with fewer images.",
                "error",
            ),
        )
        return
    try:
        settings, origin = _settings(registry, base, warm, variant, size, iterations, name)
        settings.validate(cfg.finetune_limits)
    except (KeyError, ValueError) as error:
        shutil.rmtree(dataset.root, ignore_errors=True)
        text = f"Start from: unknown checkpoint `{base}`." if isinstance(error, KeyError) else str(error)
        yield _shown(tab, views.message_html(text, "error"))
        return
    job = FineTuneJob(settings, dataset, session.folder / "finetuned" / job_id)
    previous = session.job
    if previous is not None and previous.running:
        previous.cancel()
    session.job = job
    session.touch()
    job.start()
    about = (
        f"Accepted {dataset.summary()}. Training from {origin}: variant {settings.variant}, "
        f"{settings.image_size} px, {settings.iterations} iterations."
    )
    try:
        last_plot = -1.0
        while job.running:
            snap = job.snapshot()
            plot, note = gr.skip(), gr.skip()
            if time.perf_counter() - last_plot > PLOT_SECONDS and snap["history"]["iteration"]:
                plot, last_plot = figures.loss_figure(snap["history"]), time.perf_counter()
                note = views.HEALTH_NOTE if snap["history"].get("health") else ""
            progress = progress_line(snap)
            yield {tab.status: progress + f'<div class="rdx-small">{about}</div>', tab.plot: plot,
                   tab.plot_note: note}
            time.sleep(POLL_SECONDS)
    finally:
        if job.running:  # the page went away: stop the training thread too
            job.cancel()
        session.touch()
    snap = job.snapshot()
    plot = figures.loss_figure(snap["history"]) if snap["history"]["iteration"] else None
    progress = progress_line(snap)
    if job.status == "cancelled":
        message = views.message_html(f"Cancelled at iteration {snap['iteration']}. {about}", "warning")
        yield _shown(tab, progress + message, plot)
        return
    if job.status != "done":
        message = f"Fine-tuning failed: {job.error}. The details were written to the server's log."
        yield _shown(tab, progress + views.message_html(message, "error"), plot)
        return
    entry = registry.add_local(job.out, source="fine-tuned", name=settings.name)
    entry.eval_samples, entry.archive = job.eval_samples or None, job.archive
    reference = entry.info.default_reference
    yield _shown(
        tab,
        progress + views.message_html(
            f"Done in {snap['elapsed']:.0f} s: {entry.key} is selectable above and scores against the "
            f"{views.REFERENCE_NAMES.get(reference, reference)} (see below why, and what its threshold means). "
            f"{about}", "ok"),
        plot,
        finished_text(entry, job, snap["metrics"], bool(dataset.defect)),
        offer_download(job.archive),
    )


def finetune_done(checkpoint: gr.Dropdown, base: gr.Dropdown, sessions: Sessions, request: gr.Request | None = None):
    return checkpoint_choices(checkpoint, base, sessions.registry_for(request))


def cancel(sessions: Sessions, request: gr.Request | None = None):
    session = sessions.peek(request)
    job = session.job if session is not None else None
    if job is None or not job.running:
        return views.message_html("No fine-tune is running in this session.", "info")
    job.cancel()
    return views.message_html("Cancelling: the run stops after the current iteration and saves its state.", "warning")


def loaded_name(folder_name: str) -> str:
    """The name a fine-tune was given, from its folder's name in the zip ("my-parts-20250101-120000-1a2b3c")."""
    match = re.match(r"^(.*?)-\d{8}-\d{6}-[0-9a-f]{6}$", folder_name)
    return slug(match.group(1) if match else folder_name or "loaded")


def load_zip(
    tab: FineTuneTab,
    checkpoint: gr.Dropdown,
    cfg: AppConfig,
    archive,
    request: gr.Request | None = None,
    limits: CheckpointZipLimits = CheckpointZipLimits(),
):
    """A downloaded checkpoint zip loaded back into this page's own checkpoints: validated
    (:func:`~rdexpert.app.checkpoint_zip.unpack_checkpoint_zip`: JSON and safetensors only, sizes bounded, no path
    leaves the folder), loaded once (every tensor checked against the model it describes), then selected in the
    picker. ``tab.load_status``, the picker and the "Start from" list."""
    if not archive:
        return {tab.load_status: ""}
    path = Path(str(archive if isinstance(archive, (str, Path)) else getattr(archive, "path", None) or archive.name))
    session = cfg.sessions.get(request)
    folder = session.folder / "loaded" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    try:
        unpacked = unpack_checkpoint_zip(path, folder, limits)
    except UploadError as error:
        return {tab.load_status: views.message_html(f"Not loaded: {error}", "error")}
    except OSError as error:
        log.exception("could not unpack %s into %s", path, folder)
        shutil.rmtree(folder, ignore_errors=True)
        reason = error.strerror or type(error).__name__
        return {tab.load_status: views.message_html(f"The server could not store the zip ({reason}).", "error")}
    registry = session.registry
    entry = registry.add_local(folder, source="loaded", name=loaded_name(unpacked.name))
    error = entry.error
    if error is None:
        try:
            registry.predictor(entry.key)  # every tensor against the model config.json describes
        except CheckpointError as failure:
            error = str(failure)
    if error is not None:
        registry.remove(entry.key)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("a loaded checkpoint zip was refused: %s", error)
        return {tab.load_status: views.message_html(f"Not loaded: {public_text(error)}", "error")}
    session.touch()
    ignored = f" ({unpacked.ignored} other file(s) in the zip were not read)" if unpacked.ignored else ""
    outcome = outcome_text(entry.info)
    text = (views.message_html(f"Loaded {entry.key}: it is now selected in the checkpoint list above{ignored}.",
                               "ok")
            + (f'<div class="rdx-small">{markdown_bold(outcome)}</div>' if outcome else ""))
    choices = checkpoint_choices(checkpoint, tab.base, registry)
    choices[checkpoint] = gr.Dropdown(choices=registry.choices(), value=entry.key)
    return {tab.load_status: text, **choices}


@dataclass
class FineTuneTab:
    inputs: list  # normal, defect, masks, base, variant, size, iterations, name, warm: finetune()'s inputs
    start: gr.Button
    cancel: gr.Button
    status: gr.HTML
    plot: gr.Plot
    plot_note: gr.Markdown  # what the health plot means
    metrics: gr.Markdown  # the result
    download: gr.File
    uploads: list  # (file input, its count) per upload
    load: gr.File  # a downloaded checkpoint zip, loaded back
    load_status: gr.HTML

    @property
    def outputs(self) -> list:
        """What finetune() fills."""
        return [self.status, self.plot, self.plot_note, self.metrics, self.download]

    @property
    def base(self) -> gr.Dropdown:
        return self.inputs[3]


def _files(label: str, elem_id: str) -> tuple[gr.File, gr.Markdown]:
    """An upload and, under it, its file count; a long file list scrolls inside the box (``height``), so forty
    files never push Start and the progress down the page."""
    with gr.Column(min_width=240):
        files = gr.File(label=label, file_count="multiple", file_types=["image", ".zip"], elem_id=elem_id,
                        height=170)
        count = gr.Markdown(elem_id=f"{elem_id}-count", elem_classes="rdx-small")
    return files, count


def build(cfg: AppConfig) -> FineTuneTab:
    """The tab's components (inside ``gr.Tab``)."""
    fl = cfg.finetune_limits
    gr.Markdown(intro(cfg))
    with gr.Row(elem_id="rdx-ft-uploads"):
        uploads = [
            _files("Normal images or one .zip", "rdx-ft-normal"),
            _files("Defective images (optional)", "rdx-ft-defect"),
            _files("Masks of the defective images (optional)", "rdx-ft-masks"),
        ]
    (normal, _), (defect, _), (masks, _) = uploads
    with gr.Row():
        base = gr.Dropdown(
            [PRETRAINED_CHOICE] + cfg.registry.choices(),
            value=PRETRAINED_CHOICE,
            label="Start from",
            info="a checkpoint's backbone, variant and image size",
            elem_id="rdx-ft-base",
            scale=2,
        )
        warm = gr.Checkbox(
            value=False,
            label="Warm start",
            info="from its trained weights: fewer iterations needed",
            elem_id="rdx-ft-warm",
            min_width=200,
        )
        variant = gr.Dropdown(list(VARIANT_CHOICES), value="full", label="Variant", elem_id="rdx-ft-variant")
        size = gr.Dropdown(
            [int(s) for s in IMAGE_SIZES], value=fl.default_image_size, label="Image size (px)", elem_id="rdx-ft-size"
        )
        iterations = gr.Slider(
            fl.min_iterations,
            fl.max_iterations,
            value=fl.default_iterations,
            step=1,
            label="Iterations",
            elem_id="rdx-ft-iterations",
        )
        name = gr.Textbox(value="my-parts", label="Name", elem_id="rdx-ft-name")
    with gr.Row():
        start = gr.Button("Start fine-tuning", variant="primary", elem_id="rdx-ft-start", min_width=160)
        stop = gr.Button("Cancel", variant="stop", elem_id="rdx-ft-cancel", min_width=160)
    status = gr.HTML(elem_id="rdx-ft-status")
    metrics = gr.Markdown(elem_id="rdx-ft-metrics", elem_classes="rdx-table")
    download = gr.File(label="Checkpoint folder (zip): download it to keep the model", interactive=False,
                       elem_id="rdx-ft-download", height=120)
    plot = gr.Plot(label="Loss and health check", elem_id="rdx-ft-plot")
    plot_note = gr.Markdown(elem_id="rdx-ft-plot-note", elem_classes="rdx-small")
    gr.Markdown("### Load a downloaded model\nA zip this tab offered for download, to use that model again in "
                f"this page ({CheckpointZipLimits().describe()}; only its JSON and safetensors files are read).")
    with gr.Row():
        with gr.Column(min_width=280):
            load = gr.File(label="Checkpoint zip", file_count="single", file_types=[".zip"],
                           elem_id="rdx-ft-load", height=120)
        with gr.Column(min_width=280):
            load_status = gr.HTML(elem_id="rdx-ft-load-status")
    inputs = [normal, defect, masks, base, variant, size, iterations, name, warm]
    return FineTuneTab(inputs, start, stop, status, plot, plot_note, metrics, download, uploads, load, load_status)


def wire(tab: FineTuneTab, cfg: AppConfig, checkpoint: gr.Dropdown) -> None:
    # none of these is an API endpoint: they act on the browser session's own files and jobs
    reveal(tab.start, "#rdx-ft-status")  # the progress bar, right under the buttons
    reveal(tab.load, "#rdx-ft-load-status", event="upload")
    event = tab.start.click(
        bind(finetune, tab, cfg),
        tab.inputs,
        tab.outputs,
        concurrency_id="finetune",
        concurrency_limit=1,
        show_progress="minimal",
        api_visibility="private",
    )
    event.then(
        bind(finetune_done, checkpoint, tab.base, cfg.sessions),
        outputs=[checkpoint, tab.base],
        queue=False,
        api_visibility="private",
    )
    tab.cancel.click(bind(cancel, cfg.sessions), outputs=tab.status, queue=False, api_visibility="private")
    tab.load.upload(
        bind(load_zip, tab, checkpoint, cfg),
        tab.load,
        [tab.load_status, checkpoint, tab.base],
        concurrency_id="inspect",
        api_visibility="private",
    )
    for files, count in tab.uploads:
        files.change(upload_summary, files, count, queue=False, api_visibility="private")
