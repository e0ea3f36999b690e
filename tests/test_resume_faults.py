"""Kill a real (tiny) training at chosen moments of its saves, run it again: it resumes from one whole state.

Each case trains the tiny synthetic category (64 px, batch 2, 5 iterations, random backbone weights,
a resume state every 2 iterations) in a child process: this file, run as a script (:func:`child`). Before
training, the child wraps ``rdexpert.checkpoint.io.atomic_write`` (every JSON, weights and state file goes
through it) so that it SIGKILLs itself at the moment ``MOMENT:FILE:N`` names, in the N-th write of FILE:

- ``during``: the new content is half in the temporary file, the real file not replaced yet;
- ``after``: the file is in place, nothing after it was written (e.g. ``after:state.safetensors:2``: the
  second resume state's tensors, before its state.json; ``after:model.safetensors:1``: the final weights,
  before config.json).

The child records, after every iteration, its losses and a digest of its weights and optimizer moments.
The test then checks the state on disk and runs the same training again in this process: it must resume at
the expected iteration with exactly the weights and moments the child had there, and end in a sound
checkpoint whose loss history is the child's up to that iteration.

The disk-room check (``Trainer._check_room``, sized by ``estimate_output_bytes``) is tested in-process
with ``shutil.disk_usage`` patched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS, SAVE_EVERY = 5, 2  # resume states at iterations 2 and 4, and the last one at 5 before the checkpoint


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors (names and bytes, in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def moments(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
    """The optimizers' tensors, named as the resume state names them (``NAME.INDEX.SLOT``)."""
    return {f"{name}.{index}.{slot}": torch.as_tensor(value) for name, optimizer in optimizers.items()
            for index, slots in optimizer.state_dict()["state"].items() for slot, value in slots.items()}


# -- the child: train, and SIGKILL at the chosen moment ------------------------------------------------------------
def child(spec: dict) -> None:
    torch.set_num_threads(1)
    import rdexpert.checkpoint.io as io
    import rdexpert.training.loop as loop

    moment, name, nth = spec["fault"].split(":")
    real_write, real_step, writes, seen = io.atomic_write, loop.train_step, [0], {}

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def atomic_write(path, write):
        if Path(path).name != name:
            return real_write(path, write)
        writes[0] += 1
        if writes[0] != int(nth):
            return real_write(path, write)
        if moment == "during":
            def half(tmp):
                write(tmp)
                os.truncate(tmp, os.path.getsize(tmp) // 2)
                die()
            return real_write(path, half)
        real_write(path, write)
        die()

    def train_step(model, batch, teacher_optimizer, student_optimizer, *args, **kwargs):
        seen.update(model=model, optimizers={"student": student_optimizer,
                                             **({"teacher": teacher_optimizer} if teacher_optimizer else {})})
        return real_step(model, batch, teacher_optimizer, student_optimizer, *args, **kwargs)

    def record(iteration, losses):
        with open(spec["trace"], "a") as f:
            f.write(json.dumps({"iteration": iteration, "losses": losses,
                                "weights": digest(seen["model"].trainable_state_dict()),
                                "moments": digest(moments(seen["optimizers"]))}) + "\n")

    io.atomic_write, loop.train_step = atomic_write, train_step
    loop.Trainer(loop.TrainConfig(**spec["options"]), progress=False, callback=record).fit()
    print("the run finished: the fault never fired")
    sys.exit(3)


if __name__ == "__main__":
    child(json.loads(sys.argv[1]))
    sys.exit(0)


# -- the tests -----------------------------------------------------------------------------------------------------
from helpers import CATEGORY, SIZE  # noqa: E402

import rdexpert.training.loop as loop  # noqa: E402
from rdexpert.checkpoint.folder import (  # noqa: E402
    CheckpointError,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from rdexpert.checkpoint.format import CONFIG_NAME, WEIGHTS_NAME  # noqa: E402
from rdexpert.checkpoint.io import read_json, read_tensors, write_tensors  # noqa: E402
from rdexpert.model import ExpertTeacherStudent  # noqa: E402
from rdexpert.training.loop import TrainConfig, Trainer  # noqa: E402
from rdexpert.training.output_room import estimate_output_bytes  # noqa: E402
from rdexpert.training.resume import resume_iteration  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


def options(data: Path, out: Path, **overrides) -> dict:
    opts = dict(data_root=str(data), category=CATEGORY, out=str(out), image_size=SIZE, batch_size=2,
                iterations=ITERATIONS, num_workers=0, save_every=SAVE_EVERY, save_seconds=1e9, health_every=0,
                pretrained=False, device="cpu", foreground="none")
    opts.update(overrides)
    return opts


def kill_at(opts: dict, fault: str, trace: Path) -> dict[int, dict]:
    """Train ``opts`` in a child that SIGKILLs itself at ``fault``; its record of every iteration it ran."""
    spec = {"options": opts, "fault": fault, "trace": str(trace)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, __file__, json.dumps(spec)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, f"{fault}: exit status {run.returncode}\n{run.stdout}\n{run.stderr[-3000:]}"
    lines = trace.read_text().splitlines() if trace.is_file() else []
    return {r["iteration"]: r for r in map(json.loads, lines)}


def rerun(opts: dict, monkeypatch) -> tuple[list[int], dict | None]:
    """The same training again, in this process: the iterations it ran, and the digests of the weights and
    moments it held before its first step (None: it ran none)."""
    seen, before = [], {}
    real_step = loop.train_step

    def train_step(model, batch, teacher_optimizer, student_optimizer, *args, **kwargs):
        if not before:
            optimizers = {"student": student_optimizer, **({"teacher": teacher_optimizer} if teacher_optimizer else {})}
            before.update(weights=digest(model.trainable_state_dict()), moments=digest(moments(optimizers)))
        return real_step(model, batch, teacher_optimizer, student_optimizer, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", train_step)
    Trainer(TrainConfig(**opts), progress=False, callback=lambda i, _: seen.append(i)).fit()
    return seen, before or None


def state_on_disk(out: Path) -> dict:
    """Digests of the weights and moments in the resume state file."""
    tensors = read_tensors(out / "resume" / "state.safetensors")
    return {"weights": digest({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}),
            "moments": digest({k[6:]: v for k, v in tensors.items() if k.startswith("optim.")})}


def assert_sound(out: Path, trace: dict[int, dict], resumed_at: int) -> None:
    """A finished checkpoint that loads and names its weights, one run's loss history, the child's up to the resume."""
    _, config = load_checkpoint(out)
    assert config["weights_sha256"] == file_sha256(out / WEIGHTS_NAME)
    assert config["training"]["iterations"] == ITERATIONS
    history = read_json(out / "loss_history.json")
    assert history["iteration"] == list(range(1, ITERATIONS + 1))
    for name in ("teacher", "student"):
        assert len(history[name]) == ITERATIONS
        assert history[name][:resumed_at] == [trace[i]["losses"][name] for i in range(1, resumed_at + 1)], name
    assert [h["iteration"] for h in history.get("health", [])] == [ITERATIONS]  # the final check, once
    assert not (out / "resume").exists() and not list(out.glob(".*.tmp"))


# (moment, where the rerun must start, where rdexpert before this test resumed instead, extra settings)
CASES = {
    "while the first state is written": ("during:state.safetensors:1", 0, 0, {}),
    "between the two files of the first state": ("after:state.safetensors:1", 2, 0, {}),
    "between the two files of a later state": ("after:state.safetensors:2", 4, "2, with the weights of 4", {}),
    # no periodic state at all (a short run): only the last one, kept until config.json is written
    "after the final weights, before the config": ("after:model.safetensors:1", ITERATIONS, 0,
                                                   {"save_every": 1000}),
    "while the final weights are written": ("during:model.safetensors:1", ITERATIONS, 4, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_resumes_from_its_newest_whole_state(case, tiny_data, tmp_path, monkeypatch):
    fault, start, _before_the_fix, overrides = CASES[case]
    out = tmp_path / "run"
    opts = options(tiny_data, out, **overrides)
    if case.startswith("after the final weights"):
        # a finished checkpoint of another run is in the folder: the new weights replace its weights, the kill
        # leaves its config.json, which names the old weights' hash: the pair is refused, never loaded
        save_checkpoint(ExpertTeacherStudent(TrainConfig(**opts).model_config(), pretrained=False), out,
                        training={"pretrained": False, "seed": 1})
    trace = kill_at(opts, fault, tmp_path / "trace.jsonl")

    if start:
        assert resume_iteration(out) == start
        assert state_on_disk(out) == {k: trace[start][k] for k in ("weights", "moments")}  # one save, whole
    else:
        assert resume_iteration(out) is None
        assert list((out / "resume").glob(".state.safetensors.*.tmp"))  # the half-written state
    if case == "between the two files of a later state":
        assert read_json(out / "resume" / "state.json")["iteration"] == 2  # the summary is one save behind
        real = (out / "resume" / "state.safetensors").stat().st_size
        assert abs(estimate_output_bytes(TrainConfig(**opts))["resume_state"] - real) < 0.02 * real
    if case.startswith("after the final weights"):
        with pytest.raises(CheckpointError, match="SHA-256"):
            load_checkpoint(out)
    if case.startswith("while the final weights"):
        assert list(out.glob(f".{WEIGHTS_NAME}.*.tmp")) and not (out / CONFIG_NAME).exists()

    seen, before = rerun(opts, monkeypatch)
    assert seen == list(range(start + 1, ITERATIONS + 1))
    if start and seen:  # the first resumed step starts from the weights and moments of that iteration
        assert before == {k: trace[start][k] for k in ("weights", "moments")}
    assert_sound(out, trace, start)
    if start == ITERATIONS:  # nothing retrained: the checkpoint holds the child's last weights
        assert digest(read_tensors(out / WEIGHTS_NAME)) == trace[ITERATIONS]["weights"]


# -- room on disk --------------------------------------------------------------------------------------------------
def disk(free: int):
    """What ``shutil.disk_usage`` reports for a disk with ``free`` bytes left."""
    return SimpleNamespace(total=4 * free, used=3 * free, free=free)


def test_a_disk_without_room_for_the_run_is_refused_before_any_step(tiny_data, tmp_path, monkeypatch):
    opts = options(tiny_data, tmp_path / "new" / "run")
    need = estimate_output_bytes(TrainConfig(**opts))
    # 64 px Lite0: a resume state is the weights + Adam moments of what learns (measured 25.8 MiB), the weights 8.65
    assert 25 * 2**20 < need["resume_state"] < 27 * 2**20 and 8.5 * 2**20 < need["weights"] < 9 * 2**20
    assert need["peak"] > 2 * need["resume_state"]

    free = 52 * 2**20  # the disk: above the CLI's fixed 50 MiB, below what the run writes
    monkeypatch.setattr(shutil, "disk_usage", lambda path: disk(free))
    steps = []
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: steps.append(1))
    monkeypatch.setattr(loop.Trainer, "_datasets", lambda self: pytest.fail("the data was read"))
    with pytest.raises(OSError, match=r"has only 52 MiB free, at least 5[3-9] MiB are needed \(this run's estimate: "
                                      r"2 x 2\d MiB of resume state .*8\.\d MiB of final weights") as error:
        Trainer(TrainConfig(**opts), progress=False).fit()
    assert error.value.errno == errno.ENOSPC and "\n" not in str(error.value)
    assert steps == [] and not (tmp_path / "new").exists()  # nothing ran, nothing was left behind

    free = need["peak"] + 2**20
    monkeypatch.setattr(shutil, "disk_usage", lambda path: disk(free))
    Trainer(TrainConfig(**opts), progress=False)._check_room()  # enough room: no error


def test_a_resume_state_already_there_counts_as_room(tiny_data, tmp_path, monkeypatch):
    """Resuming replaces the state: its bytes are free for the run (a nearly full disk can still finish)."""
    opts = options(tiny_data, tmp_path / "run")
    need = estimate_output_bytes(TrainConfig(**opts))
    state = tmp_path / "run" / "resume" / "state.safetensors"
    state.parent.mkdir(parents=True)
    with open(state, "wb") as f:
        f.truncate(need["resume_state"])  # sparse: the size counts, not the blocks
    free = need["peak"] - need["resume_state"] + 2**20
    monkeypatch.setattr(shutil, "disk_usage", lambda path: disk(free))
    Trainer(TrainConfig(**opts), progress=False)._check_room()


def test_a_full_disk_while_writing_tensors_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    """safetensors raises its own SafetensorError (a traceback in the CLI); write_tensors makes it an OSError."""
    from safetensors import SafetensorError

    import rdexpert.checkpoint.io as io

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"x" * 10)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(io, "save_file", full)
    with pytest.raises(OSError) as error:
        write_tensors(tmp_path / "state.safetensors", {"a": torch.zeros(3)})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "state.safetensors")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone, nothing replaced
