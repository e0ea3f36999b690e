"""The two-step training loop of RD with Expert (docs/design.md §3.2); its settings are rdexpert.training.config.

Every iteration: (1) the teacher learns to stay on the frozen expert for normal
content and to turn away from it inside synthetic defects; (2) with the teacher
frozen for the step, the student learns to rebuild clean teacher and expert
features from both the clean and the defective image.

Only normal training images are used. A small held-out part of them calibrates
the normal score range at the end (and the out-of-distribution check, rdexpert.inference.ood);
the test split never reaches this module.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rdexpert.checkpoint.folder import save_checkpoint
from rdexpert.checkpoint.io import (
    check_writable,
    read_json,
    read_tensors_and_metadata,
    write_json,
    write_tensors,
)
from rdexpert.data import (
    SyntheticAnomalyDataset,
    fit_image,
    load_image,
    train_and_holdout,
)
from rdexpert.evaluation.plots import plot_loss_history
from rdexpert.inference.ood import fit_ood, save_ood
from rdexpert.model import ExpertTeacherStudent
from rdexpert.runtime import resolve_device
from rdexpert.synthesis import (
    AnomalySynthesizer,
    choose_foreground,
    foreground_method_for,
)
from rdexpert.synthesis.foreground import AUTO_SAMPLE
from rdexpert.training import distributed
from rdexpert.training.calibrate_threshold import calibrate
from rdexpert.training.config import (  # noqa: F401  (re-exported: `from rdexpert.training.loop import TrainConfig` keeps working)
    MAX_BATCH_SIZE,
    MAX_ITERATIONS,
    PRESETS,
    RESUMABLE_CHANGES,
    TEACHER_BN_MODES,
    TrainConfig,
)
from rdexpert.training.health import (
    HEALTH_MAX_IMAGES,
    HealthSet,
    check_health,
    health_set_of,
    reference_for,
)
from rdexpert.training.output_room import estimate_output_bytes, mib
from rdexpert.training.resume import RESUME_FORMAT, RESUME_KEY, history_until
from rdexpert.training.step import (  # noqa: F401  (warm_start re-exported)
    ParallelParts,
    initialise_student,
    scheduled_iterations,
    teacher_train_mode,
    train_step,
    warm_start,
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. ``kill``, a container stop) while training: handled like Ctrl-C, the state is saved."""


def _stop_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` while training (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise Terminated(f"stopped by signal {signum}; the run resumes when started again")

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


DISTRIBUTED_MODES = ("none", "ddp")


class Trainer:
    """Runs a :class:`TrainConfig` to a checkpoint folder, resuming an interrupted run in the same folder.

    ``distributed_mode="ddp"`` (under torchrun) trains the one category on every rank together: each rank
    takes an equal share of every batch (the global batch stays the config's), gradients and
    BatchNorm statistics are averaged over the ranks, and rank 0 writes the checkpoint.
    """

    def __init__(self, config: TrainConfig, progress: bool = True, callback=None, on_health=None,
                 distributed_mode: str = "none"):
        if distributed_mode not in DISTRIBUTED_MODES:
            raise ValueError(f"unknown distributed mode {distributed_mode!r}; choose one of {DISTRIBUTED_MODES}")
        self.config = config
        self.out = Path(config.out)
        self.callback = callback  # called as callback(iteration, losses) after every step; may raise to cancel
        self.on_health = on_health  # called with each health check's dict (rdexpert.training.health)
        self.worker = distributed.Worker.from_env() if distributed_mode == "ddp" else distributed.Worker()
        self.parallel = self.worker.world_size > 1
        self.progress = progress and self.worker.is_main
        self.device = resolve_device(self.worker.device(config.device))
        self.recipe = config.resolved_recipe()
        if self.parallel and config.batch_size % self.worker.world_size:
            raise ValueError(f"--distributed ddp splits each batch over the {self.worker.world_size} ranks: the batch "
                             f"size ({config.batch_size}) must be a multiple of it")

    # -- data -------------------------------------------------------------------------------
    def _datasets(self):
        c = self.config
        # the dataset's own held-out normals where it has them (MVTec AD 2 validation/good), else a split
        train, holdout = train_and_holdout(c.data_root, c.category, c.layout, c.holdout_fraction, seed=c.seed)
        if not train:
            raise ValueError(f"no normal training images found for category {c.category!r} in {c.data_root}")
        normal = train + holdout
        if not holdout and c.holdout_fraction == 0:
            warnings.warn(
                f"holdout fraction 0 (recipe {c.recipe!r}: every normal image trains, as the authors did): the threshold "
                "and the health check use the training images themselves, so the threshold is optimistic (likely too "
                "low: new normal images may be flagged)", UserWarning, stacklevel=2)
        elif not holdout:
            warnings.warn(
                f"{len(normal)} normal training image(s) and holdout fraction {c.holdout_fraction:g}: none can be "
                "held out, so the threshold is calibrated on the training images themselves: optimistic, likely too "
                "low (new normal images may be flagged as anomalous); add normal images (20 or more) for a "
                "trustworthy threshold", UserWarning, stacklevel=2)
        method = foreground_method_for(c.category, c.foreground, table=self.recipe.foreground_table)
        self.foreground_reason = "given" if c.foreground else f"the {self.recipe.foreground_table} table"
        if method == "auto" and c.foreground is None:  # a category no table knows: decide from its training images
            pictures = [fit_image(load_image(s.path), c.image_size, c.model_config().input_fit, padded=False)
                        for s in train[:AUTO_SAMPLE]]
            method, self.foreground_reason = choose_foreground(pictures)
        synthesizer = c.synthesizer(method)
        train_set = SyntheticAnomalyDataset(train, c.image_size, synthesizer, seed=c.seed, foreground_method=method,
                                            fit=c.model_config().input_fit)
        return train_set.preload(), holdout, method, synthesizer

    def _health_set(self, samples: list, synthesizer: AnomalySynthesizer) -> HealthSet:
        return health_set_of(samples[:HEALTH_MAX_IMAGES], self.config.model_config(), synthesizer,
                             draws=self.config.health_draws)

    def _check_health(self, model, health_set: HealthSet, iteration: int, history: dict) -> dict:
        result = {"iteration": iteration, **check_health(model, health_set, self.device)}
        history.setdefault("health", []).append(result)
        if self.on_health is not None:
            self.on_health(result)
        if self.progress:
            tqdm.write(f"health @ {iteration}: teacher-expert distance on normal {result['agreement']:.4f}, "
                       f"synthetic-defect pixel AUROC teacher {result['separation_teacher']:.3f} / "
                       f"expert {result['separation_expert']:.3f}")
        return result

    def _batches(self, dataset: SyntheticAnomalyDataset, start_epoch: int):
        c = self.config
        # CPU default 0: a loader worker competes with the training step for the few cores
        # (bench/loader_workers.py: 1.03 s/it with 0 workers, 1.45 with 1, on 2 cores); on CUDA 4 keep the GPU fed
        workers = c.num_workers if c.num_workers is not None else (4 if self.device.type == "cuda" else 0)
        # the released code keeps the last partial batch of an epoch
        drop_last = self.recipe.schedule == "iterations" and len(dataset) >= c.batch_size
        epoch = start_epoch
        while True:
            dataset.set_epoch(epoch)
            order = dict(batch_size=min(c.batch_size, len(dataset)), shuffle=True, drop_last=drop_last,
                         generator=torch.Generator().manual_seed(c.seed * 100_003 + epoch))
            if self.parallel:
                order = dict(batch_sampler=self._rank_shares(len(dataset), order))
            loader = DataLoader(dataset, num_workers=workers, pin_memory=self.device.type == "cuda", **order)
            for batch in loader:
                yield epoch, batch
            epoch += 1

    def _barrier(self) -> None:
        """Wait for the other ranks of a DDP run (a multi-category job's ranks train apart and never wait here)."""
        if self.parallel:
            distributed.barrier()

    def _rank_shares(self, size: int, order: dict) -> list[list[int]]:
        """This rank's share of each batch a single process would draw: positions r, r + world, ... of it.

        The single-process batches come from a DataLoader over the bare indices with the same
        shuffle settings, so the ranks' shares make up exactly the batches of a one-process run.
        A last batch too small to give every rank an image is dropped (a rank without data would stall DDP).
        """
        world, rank = self.worker.world_size, self.worker.rank
        batches = [batch.tolist() for batch in DataLoader(range(size), **order)]
        return [batch[rank::world] for batch in batches if len(batch) >= world]

    # -- resume state ------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.out / "resume"

    def _save_state(self, model, optimizers, iteration, epoch, history, elapsed):
        """One resume state, whole, in state.safetensors (see :data:`RESUME_KEY`); then its readable summary
        state.json and the loss history for people (neither is needed to resume)."""
        if not self.worker.is_main:  # the ranks hold the same weights; one copy is kept
            return
        tensors = {f"model.{k}": v for k, v in model.trainable_state_dict().items()}
        groups = {}
        for name, optimizer in optimizers.items():
            state = optimizer.state_dict()
            groups[name] = state["param_groups"]
            for index, slots in state["state"].items():
                for slot, value in slots.items():
                    tensors[f"optim.{name}.{index}.{slot}"] = torch.as_tensor(value)
        summary = {"format": RESUME_FORMAT, "save_id": uuid.uuid4().hex, "iteration": iteration, "epoch": epoch,
                   "elapsed_seconds": elapsed, "config": self.config.to_dict(), "tensors": "state.safetensors"}
        record = {**summary, "param_groups": groups, "torch_rng": torch.get_rng_state().tolist(), "history": history}
        write_tensors(self.state_dir / "state.safetensors", tensors,
                      metadata={"format": "pt", RESUME_KEY: json.dumps(record)})
        write_json(self.state_dir / "state.json", summary)
        write_json(self.out / "loss_history.json", history)

    def _load_state(self, model, optimizers):
        tensors_path, meta_path = self.state_dir / "state.safetensors", self.state_dir / "state.json"
        if not tensors_path.is_file():
            if meta_path.is_file():
                warnings.warn(f"{meta_path} without its state.safetensors (removed?): the run starts over",
                              UserWarning, stacklevel=3)
            return None
        try:
            tensors, metadata = read_tensors_and_metadata(tensors_path)
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise ValueError(f"{tensors_path} is not a readable resume state ({error}); delete the 'resume' "
                             f"subfolder of {self.out} to start over") from None
        if RESUME_KEY in metadata:
            meta = json.loads(metadata[RESUME_KEY])
            history = meta["history"]
        elif meta_path.is_file():  # a state saved before the counters moved into the tensors file (format 1)
            meta = read_json(meta_path)
            history = history_until(read_json(self.out / "loss_history.json"), meta["iteration"])
        else:
            return None
        saved, current = TrainConfig.from_dict(meta["config"]).to_dict(), self.config.to_dict()
        changed = [k for k, v in saved.items() if k not in RESUMABLE_CHANGES and current.get(k) != v]
        if changed:
            raise ValueError(
                f"{self.out} holds an interrupted run with different settings ({', '.join(changed)}); "
                "use another --out folder, or delete its 'resume' subfolder to start over"
            )
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
        for name, optimizer in optimizers.items():
            prefix = f"optim.{name}."
            state: dict[int, dict] = {}
            for key, value in tensors.items():
                if key.startswith(prefix):
                    index, slot = key[len(prefix):].split(".", 1)
                    state.setdefault(int(index), {})[slot] = value
            try:
                optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
            except ValueError as error:  # parameters this model no longer has (a state from an older rdexpert)
                raise ValueError(f"{tensors_path} does not fit this model's {name} parameters ({error}); delete "
                                 f"the 'resume' subfolder of {self.out} to start over") from None
        torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
        return meta["iteration"], meta["epoch"], history, meta["elapsed_seconds"]

    # -- room on disk ------------------------------------------------------------------------
    def _check_room(self) -> dict[str, int]:
        """Refuse, before any data is read or step run, an output folder without room for what this run writes
        (:func:`estimate_output_bytes`); a resume state already there is replaced, so its bytes count as free."""
        need = estimate_output_bytes(self.config)
        present = sum(p.stat().st_size for p in self.state_dir.glob("state.*") if p.is_file()) \
            if self.state_dir.is_dir() else 0
        check_writable(self.out, min_free=max(need["peak"] - present, 0), needed_for=(
            f"this run's estimate: 2 x {mib(need['resume_state'])} MiB of resume state while a save replaces "
            f"the previous one, {mib(need['weights'])} MiB of final weights, {mib(need['other'] + need['ood'])} "
            "MiB of other files" + (f", less the {mib(present)} MiB resume state already there" if present else "")))
        return need

    # -- main loop ---------------------------------------------------------------------------
    def fit(self) -> Path:
        c = self.config
        if self.worker.is_main:
            for stale in [*self.out.glob(".*.tmp"), *self.state_dir.glob(".*.tmp")]:
                stale.unlink(missing_ok=True)  # half-written files of a run killed mid-save (rdexpert.checkpoint.io.atomic_write)
            self._check_room()  # before the process group, the data and the model: a full disk fails in a second
        if self.parallel:
            distributed.start_group(self.worker, self.device)
            self.worker.limit_cpu_threads()
        self._barrier()
        torch.manual_seed(c.seed)
        np.random.seed(c.seed % 2**32)
        dataset, holdout, foreground, synthesizer = self._datasets()
        health_set = self._health_set(holdout or dataset.samples, synthesizer)
        model = ExpertTeacherStudent(c.model_config(), pretrained=c.pretrained)
        initialise_student(model, self.recipe.student_init)
        warm = warm_start(model, c.init_from) if c.init_from else None
        model = model.to(self.device)
        total = scheduled_iterations(c.iterations, len(dataset), c.batch_size, self.recipe.schedule)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        student_optimizer = torch.optim.Adam(model.student_parameters(), lr=c.student_lr, betas=c.betas)
        optimizers = {"student": student_optimizer}
        teacher_optimizer = None
        if model.variant.train_teacher:
            teacher_optimizer = torch.optim.Adam(model.trained_teacher.parameters(), lr=c.teacher_lr, betas=c.betas)
            optimizers["teacher"] = teacher_optimizer

        start, epoch, history, elapsed = 0, 0, {"iteration": []}, 0.0
        resumed = self._load_state(model, optimizers)
        if resumed is not None:
            start, epoch, history, elapsed = resumed
            epoch += 1  # continue with fresh synthetic anomalies
        if self.parallel and len(set(distributed.gather(start))) > 1:
            raise RuntimeError(f"the ranks found different resume states in {self.out} (iterations "
                               f"{distributed.gather(start)}): DDP resumes need one output folder all ranks see")
        parallel = ParallelParts(model, self.device) if self.parallel else None
        model.train()
        batches = self._batches(dataset, epoch)
        bar = tqdm(
            total=total, initial=start, disable=not self.progress, dynamic_ncols=True,
            desc=f"train {c.variant} {c.category or ''}".strip(), unit="it",
        )
        began = time.perf_counter() - elapsed
        last_save = time.perf_counter()
        iteration = start
        restore_sigterm = _stop_on_sigterm()
        try:
            while iteration < total:
                epoch, batch = next(batches)
                losses = train_step(model, batch, teacher_optimizer, student_optimizer, self.device, c.teacher_bn,
                                    self.recipe, parallel)
                iteration += 1
                history["iteration"].append(iteration)
                for name, value in losses.items():
                    if not math.isfinite(value):
                        raise FloatingPointError(f"{name} loss became {value} at iteration {iteration}")
                    history.setdefault(name, []).append(value)
                bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
                bar.update(1)
                if self.callback is not None:
                    self.callback(iteration, losses)
                if c.health_every and iteration % c.health_every == 0 and iteration < total and self.worker.is_main:
                    self._check_health(model, health_set, iteration, history)
                due = iteration % c.save_every == 0 or time.perf_counter() - last_save >= c.save_seconds
                if due and iteration < total:
                    self._save_state(model, optimizers, iteration, epoch, history, time.perf_counter() - began)
                    last_save = time.perf_counter()
        except BaseException:
            if iteration > start:  # keep what was learned, so the run can resume
                try:
                    self._save_state(model, optimizers, iteration, epoch, history, time.perf_counter() - began)
                except Exception as failed:  # e.g. the full disk that stopped the run: the first error is raised
                    warnings.warn(f"the state of iteration {iteration} could not be saved ({failed}); the run "
                                  "resumes from the previous one", UserWarning, stacklevel=2)
            raise
        finally:
            bar.close()
            restore_sigterm()
        train_seconds = time.perf_counter() - began
        if iteration > start:
            # the state at the last iteration stays until config.json is written: a run killed while calibrating
            # or saving the checkpoint (e.g. between the weights and the config) resumes here, with no step to redo
            self._save_state(model, optimizers, iteration, epoch, history, train_seconds)
        if not self.worker.is_main:  # rank 0 checks, calibrates and saves the one model the ranks share
            self._barrier()
            return self.out
        final_health = self._check_health(model, health_set, iteration, history)
        reference, verdict, reason = (reference_for(final_health, self.recipe.reference_switch) if model.variant.train_teacher
                                      else ("teacher", "teacher", "the teacher is the expert"))
        model.set_default_reference(reference)
        model.eval()
        calibration = calibrate(model, holdout or dataset.samples, c.image_size, self.device, synthesizer,
                                source="held-out normal training images" if holdout else
                                "the training images themselves (too few to hold any out): optimistic")
        ood = fit_ood(model, dataset.samples, holdout, c.image_size, self.device)
        write_json(self.out / "loss_history.json", history)
        plot_loss_history(history, self.out / "loss.png")
        save_checkpoint(
            model,
            self.out,
            training={**c.to_dict(), "foreground_method": foreground,
                      "foreground_reason": self.foreground_reason, "train_images": len(dataset),
                      "holdout_images": len(holdout), "train_seconds": round(train_seconds, 1),
                      "iterations_run": total, "recipe_choices": self.recipe.to_dict(),
                      "recipe_deviations": self.recipe.deviations(),
                      "ran_on": str(self.device), "seconds_per_iteration": round(train_seconds / max(total, 1), 4),
                      "worker": distributed.Worker.from_env().describe(), **({"warm_start": warm} if warm else {}),
                      **({"distributed": {"mode": "ddp", "world_size": self.worker.world_size}} if self.parallel else {})},
            dataset={"root": str(c.data_root), "category": c.category, "layout": c.layout},
            calibration=calibration,
            health={"final": final_health, "reason": reason, "verdict": verdict,  # the choice: model.default_reference
                    "check_images": len(health_set), "synthetic_draws": c.health_draws,
                    "source": "held-out normal training images" if holdout else "training images"},
            **({"ood": save_ood(ood, self.out)} if ood is not None else {}),  # its file before the config
        )
        shutil.rmtree(self.state_dir, ignore_errors=True)  # the finished checkpoint supersedes it
        self._barrier()
        return self.out


def train(config: TrainConfig, progress: bool = True, distributed_mode: str = "none") -> Path:
    """Train and save; returns the checkpoint folder."""
    return Trainer(config, progress=progress, distributed_mode=distributed_mode).fit()
