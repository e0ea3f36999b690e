"""Fine-tune jobs for the app: train on an uploaded folder in a background thread, with progress and cancel.

A :class:`FineTuneJob` wraps :class:`rdexpert.training.loop.Trainer`: the trainer's
per-step callback records the losses and raises :class:`Cancelled` once
:meth:`FineTuneJob.cancel` was called (the trainer then saves a resumable state
and re-raises). At the end the threshold is already calibrated by the trainer on
held-out normal images; when defective images were uploaded, the job also
evaluates the model on those held-out normal images plus the defective ones and
writes the metrics into the checkpoint's config.json.

A failed run keeps its traceback in the server log; :attr:`FineTuneJob.error`
is the short reason for the page, without server paths.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from rdexpert.app.registry import ABLATION_VARIANTS, public_text
from rdexpert.app.uploads import UploadedDataset
from rdexpert.checkpoint.folder import update_config
from rdexpert.data import Sample, folder_samples, list_samples, split_holdout
from rdexpert.model import VARIANTS
from rdexpert.training.config import PRESETS

log = logging.getLogger(__name__)

IMAGE_SIZES = (64, 96, 128, 192, 256)
# the full model first, then down the ablation ladder, then the other variants
VARIANT_CHOICES = (*reversed(ABLATION_VARIANTS), *(v for v in VARIANTS if v not in ABLATION_VARIANTS))


@dataclass(frozen=True)
class FineTuneLimits:
    """The training budget the app allows (stated in the page)."""

    default_iterations: int = PRESETS["quick"]["iterations"]  # the `quick` preset: minutes on a CPU Space
    min_iterations: int = 1
    max_iterations: int = 2000
    default_image_size: int = PRESETS["quick"]["image_size"]
    max_batch_size: int = 8


class Cancelled(Exception):
    """Raised from the trainer's callback to stop a run the user cancelled."""


@dataclass
class FineTuneSettings:
    name: str
    variant: str = "full"
    backbone: str | None = None
    image_size: int = PRESETS["quick"]["image_size"]
    iterations: int = PRESETS["quick"]["iterations"]
    batch_size: int | None = None
    device: str = "auto"
    textures: str | None = None
    init_from: str | None = None  # warm start: a checkpoint whose trained weights the run begins from

    def validate(self, limits: FineTuneLimits = FineTuneLimits()) -> None:
        if not limits.min_iterations <= int(self.iterations) <= limits.max_iterations:
            raise ValueError(
                f"iterations must be between {limits.min_iterations} and {limits.max_iterations}, got {self.iterations}"
            )
        if int(self.image_size) not in IMAGE_SIZES:
            raise ValueError(f"image size must be one of {IMAGE_SIZES}, got {self.image_size}")
        if self.variant not in VARIANT_CHOICES:
            raise ValueError(f"variant must be one of {VARIANT_CHOICES}, got {self.variant!r}")
        if self.batch_size is not None and not 1 <= int(self.batch_size) <= limits.max_batch_size:
            raise ValueError(f"batch size must be between 1 and {limits.max_batch_size}")


@dataclass
class FineTuneJob:
    """One run; ``start()`` trains in a daemon thread, the UI polls ``snapshot()``."""

    settings: FineTuneSettings
    dataset: UploadedDataset
    out: Path
    status: str = "waiting"  # waiting | loading | training | calibrating | evaluating | done | cancelled | failed
    iteration: int = 0
    history: dict = field(default_factory=lambda: {"iteration": []})
    error: str | None = None
    metrics: dict | None = None
    eval_samples: list[Sample] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    archive: Path | None = None

    def __post_init__(self):
        self.out = Path(self.out)
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._step_clock: list[tuple[int, float]] = []  # (iteration, when it ended): first and latest only

    # -- control -------------------------------------------------------------------------------
    def start(self) -> "FineTuneJob":
        self.settings.validate()
        self.started = time.perf_counter()
        self.status = "loading"
        self._thread = threading.Thread(target=self._run, name=f"finetune-{self.settings.name}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def seconds_per_iteration(self) -> float | None:
        """Measured: the mean time of the iterations since the first one ended (loading and the first step's
        warm-up left out); None until two iterations have ended."""
        if len(self._step_clock) < 2:
            return None
        (first, began), (latest, now) = self._step_clock
        return (now - began) / (latest - first) if latest > first else None

    def snapshot(self) -> dict:
        with self._lock:
            stopping = self._cancel.is_set() and self.finished is None and self.status not in ("cancelled", "failed")
            return {
                "status": "cancelling" if stopping else self.status,
                "seconds_per_iteration": self.seconds_per_iteration(),
                "iteration": self.iteration,
                "iterations": int(self.settings.iterations),
                "history": {k: list(v) for k, v in self.history.items()},
                "error": self.error,
                "metrics": dict(self.metrics) if self.metrics else None,
                "elapsed": (self.finished or time.perf_counter()) - (self.started or time.perf_counter()),
            }

    # -- the run ---------------------------------------------------------------------------------
    def _on_health(self, health: dict) -> None:
        with self._lock:
            self.history.setdefault("health", []).append(dict(health))

    def _callback(self, iteration: int, losses: dict) -> None:
        with self._lock:
            self.status = "training"
            self.iteration = iteration
            self._step_clock = [*self._step_clock[:1], (iteration, time.perf_counter())]
            self.history["iteration"].append(iteration)
            for name, value in losses.items():
                self.history.setdefault(name, []).append(float(value))
            if iteration >= int(self.settings.iterations):
                self.status = "calibrating"
        if self._cancel.is_set():
            raise Cancelled(f"cancelled at iteration {iteration}")

    def train_config(self):
        from rdexpert.training.loop import TrainConfig

        s = self.settings
        return TrainConfig(
            data_root=str(self.dataset.normal_dir),
            category=None,
            layout="folder",
            out=str(self.out),
            variant=s.variant,
            preset="quick",
            backbone=s.backbone,
            image_size=int(s.image_size),
            iterations=int(s.iterations),
            batch_size=s.batch_size,
            device=s.device,
            textures=s.textures,
            init_from=s.init_from,
            save_every=max(int(s.iterations), 100),
            # no DataLoader worker processes: forking a threaded web server is unsafe, and a forked worker
            # inherits the server's sockets and pipes (it kept a test browser's driver pipe open). Synthesis
            # of a few images per step costs little next to the CPU training step.
            num_workers=0,
        )

    def _run(self) -> None:
        from rdexpert.training.loop import Trainer

        try:
            if self._cancel.is_set():
                raise Cancelled("cancelled before the start")
            config = self.train_config()
            Trainer(config, progress=False, callback=self._callback, on_health=self._on_health).fit()
            self._finish(config)
            self.status = "done"
        except Cancelled:
            self.status = "cancelled"
        except Exception as error:  # shown in the page, the traceback in the log
            log.exception("fine-tune %s failed (output %s)", self.settings.name, self.out)
            self.error = f"{type(error).__name__}: {public_text(error)}"
            self.status = "failed"
        finally:
            self.finished = time.perf_counter()

    def _finish(self, config) -> None:
        if self.dataset.defect:
            self.status = "evaluating"
            self.eval_samples = evaluation_samples(self.dataset, config.holdout_fraction, config.seed)
            self.metrics = evaluate_finetune(self.out, self.eval_samples, config.device)
            if self.metrics:
                update_config(
                    self.out,
                    evaluation={
                        "images": len(self.eval_samples),
                        "normal_images": sum(s.label == 0 for s in self.eval_samples),
                        "defective_images": sum(s.label == 1 for s in self.eval_samples),
                        "note": "held-out normal training images (also used for the threshold) + uploaded defective "
                        "images; not an independent test split",
                    },
                )
        self.archive = zip_checkpoint(self.out)


def evaluation_samples(dataset: UploadedDataset, holdout_fraction: float, seed: int) -> list[Sample]:
    """The trainer's held-out normal images (same split rule and seed) plus the uploaded defective images."""
    normal = [s for s in list_samples(dataset.normal_dir, None, "train", layout="folder") if s.label == 0]
    _, holdout = split_holdout(normal, holdout_fraction, seed=seed)
    defects = folder_samples(None, dataset.defect_dir, dataset.mask_dir) if dataset.defect else []
    return holdout + defects


def evaluate_finetune(folder: Path, samples: list[Sample], device: str = "auto") -> dict:
    """Evaluate the fine-tuned checkpoint on its held-out normals and uploaded defects (as the Predictor runs it)
    and record the metrics in its config.json; {} when the samples lack one of the two kinds."""
    from rdexpert.checkpoint.pretrained import Checkpoint
    from rdexpert.evaluation.record import evaluate_checkpoint, finite_metrics
    from rdexpert.runtime import resolve_device

    if not any(s.label == 0 for s in samples) or not any(s.label == 1 for s in samples):
        return {}
    dev = resolve_device(device)
    checkpoint = Checkpoint.from_pretrained(folder, map_location=dev)
    result = evaluate_checkpoint(checkpoint, samples, device=dev, record={
        "split": "held-out normal training images + uploaded defective images", "dataset": "uploaded",
        "category": checkpoint.info.category})
    return finite_metrics(result)


def zip_checkpoint(folder: str | Path, archive: str | Path | None = None) -> Path:
    """Zip a checkpoint folder (config.json, model.safetensors, loss curve), without the resume state.

    The zip is written under a temporary name and renamed when complete; when
    writing fails (a full disk), the temporary file is removed and the error raised.
    """
    folder = Path(folder)
    archive = Path(archive) if archive is not None else folder.with_suffix(".zip")
    tmp = archive.with_suffix(".zip.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                relative = path.relative_to(folder)
                if path.is_file() and relative.parts[0] != "resume" and not path.name.startswith("."):
                    zf.write(path, Path(folder.name) / relative)
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    return archive
