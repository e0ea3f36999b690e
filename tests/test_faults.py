"""Fault injection: training killed with SIGKILL at chosen moments, then run again, ends in a sound checkpoint.

SIGKILL cannot be caught, so nothing in the trainer gets to clean up: what is on
disk at that moment is all the next run has. Each case trains a tiny run
(MPDD metal_plate, 64 px, batch 2, 6 iterations, random backbone weights) in a
child process that kills itself at a chosen moment; the moment is chosen by the
``RDEXPERT_FAULT`` environment variable, read only by the short script the child
runs (:data:`CHILD`), which wraps one function of rdexpert before training:

- ``step:N``: just before the N-th ``train_step`` (N=1: before the first iteration);
- ``partial:NAME:N``: during the N-th write of the file NAME (half of it is in
  the temporary file, the real file is not replaced yet).

The kills between the files of one save (the two files of a resume state, the final
weights and their config) and during the final save are in tests/test_resume_faults.py.

After the kill the same training is run again in this process, and must end in
a checkpoint that loads, whose config names the weights' hash, with the loss
history of exactly one run; an interrupted run must resume, not start over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rdexpert.checkpoint.folder import CheckpointError, file_sha256, load_checkpoint
from rdexpert.checkpoint.format import WEIGHTS_NAME
from rdexpert.training.loop import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 6
FAULT_ENV = "RDEXPERT_FAULT"

# The child: wrap the chosen function so that the process SIGKILLs itself at the chosen moment, then train.
CHILD = r"""
import json, os, signal, sys
from pathlib import Path

import torch
torch.set_num_threads(1)
import rdexpert.checkpoint.io, rdexpert.training.loop

kind, *args = os.environ["RDEXPERT_FAULT"].split(":")


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if kind == "step":
    real_step, calls = rdexpert.training.loop.train_step, [0]

    def train_step(*a, **k):
        calls[0] += 1
        if calls[0] == int(args[0]):
            die()
        return real_step(*a, **k)

    rdexpert.training.loop.train_step = train_step
elif kind == "partial":
    real_save, calls = rdexpert.checkpoint.io.save_file, [0]

    def save_file(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        if Path(filename).name.startswith("." + args[0] + "."):  # atomic_write's temporary file
            calls[0] += 1
            if calls[0] == int(args[1]):
                with open(filename, "r+b") as f:
                    f.truncate(os.path.getsize(filename) // 2)
                die()

    rdexpert.checkpoint.io.save_file = save_file
else:
    sys.exit(f"unknown fault {kind!r}")

rdexpert.training.loop.train(rdexpert.training.loop.TrainConfig(**json.loads(sys.argv[1])), progress=False)
print("the run finished: the fault never fired")
sys.exit(3)
"""


def options(mpdd_root, out: Path, **overrides) -> dict:
    opts = dict(data_root=str(mpdd_root), category="metal_plate", out=str(out), image_size=64, batch_size=2,
                iterations=ITERATIONS, num_workers=0, save_every=1000, save_seconds=0.0, health_every=0,
                pretrained=False, device="cpu")
    opts.update(overrides)
    return opts


def kill_during(opts: dict, fault: str) -> None:
    """Train ``opts`` in a child process that SIGKILLs itself at ``fault``."""
    env = {**os.environ, FAULT_ENV: fault, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(opts)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, (
        f"fault {fault}: exit status {child.returncode}\n{child.stdout}\n{child.stderr[-3000:]}")


def rerun(opts: dict) -> list[int]:
    """The same training, normally, in this process; returns the iterations it ran."""
    seen = []
    Trainer(TrainConfig(**opts), progress=False, callback=lambda i, _: seen.append(i)).fit()
    return seen


def state_iteration(out: Path) -> int | None:
    path = out / "resume" / "state.json"
    return json.loads(path.read_text())["iteration"] if path.is_file() else None


def assert_sound(out: Path, **training) -> dict:
    """A finished checkpoint: it loads, its config names the weights on disk, one run's loss history."""
    model, config = load_checkpoint(out)
    assert config["weights_sha256"] == file_sha256(out / WEIGHTS_NAME)
    assert config["training"]["iterations"] == ITERATIONS
    for key, value in training.items():
        assert config["training"][key] == value, key
    history = json.loads((out / "loss_history.json").read_text())
    assert history["iteration"] == list(range(1, ITERATIONS + 1))
    assert len(history["teacher"]) == len(history["student"]) == ITERATIONS
    assert not (out / "resume").exists()  # the finished checkpoint superseded the resume state
    assert not list(out.glob(".*.tmp"))  # half-written files of the killed run were removed
    return config


def test_killed_before_the_first_iteration_starts_over(mpdd_root, tmp_path):
    opts = options(mpdd_root, tmp_path / "run")
    kill_during(opts, "step:1")
    out = Path(opts["out"])
    assert not (out / WEIGHTS_NAME).exists() and state_iteration(out) is None  # nothing was learned, nothing saved
    with pytest.raises(CheckpointError):
        load_checkpoint(out)
    assert rerun(opts) == list(range(1, ITERATIONS + 1))
    assert_sound(out)


def test_killed_mid_training_resumes_where_it_stopped(mpdd_root, tmp_path):
    opts = options(mpdd_root, tmp_path / "run")
    kill_during(opts, "step:4")  # iterations 1-3 ran, each saved a resume state
    out = Path(opts["out"])
    assert state_iteration(out) == 3 and not (out / WEIGHTS_NAME).exists()
    assert rerun(opts) == [4, 5, 6]  # resumed, not started from 0
    assert_sound(out)


def test_killed_while_writing_a_resume_state_resumes_from_the_previous_one(mpdd_root, tmp_path):
    opts = options(mpdd_root, tmp_path / "run")
    kill_during(opts, "partial:state.safetensors:3")  # the state save of iteration 3 dies half-written
    out = Path(opts["out"])
    assert state_iteration(out) == 2 and list((out / "resume").glob(".state.safetensors.*.tmp"))
    assert rerun(opts) == [3, 4, 5, 6]
    assert_sound(out)
