"""Atomic file writes and tensor files: a crash mid-save never leaves a half-written file behind."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, flush it to disk, then rename it into place
    (a power cut leaves the old file or the whole new one, never a renamed empty file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        _fsync(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MIN_FREE_BYTES = 50 * 2**20  # an output folder with less free room is refused before any compute


def check_writable(folder: str | Path, min_free: int = MIN_FREE_BYTES, what: str = "output folder",
                   needed_for: str | None = None) -> Path:
    """Make sure ``folder`` exists (created if needed), takes a file and has ``min_free`` bytes of free room.

    Meant to run before any compute, so that a read-only or full output location fails in a second
    instead of after a long run. A probe file is written and deleted; folders created here and
    still empty afterwards are removed again, so a refused command leaves nothing behind. Raises
    OSError (PermissionError, NotADirectoryError, ... or ENOSPC) with a message naming the folder.
    ``needed_for`` says what ``min_free`` is made of (e.g. a training run's estimate, rdexpert.training.loop),
    appended to the one-line ENOSPC message.
    """
    folder = Path(folder)
    created = []
    for parent in reversed([folder, *folder.parents]):
        if not parent.exists():
            created.append(parent)
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".rdexpert-write-probe.", suffix=".tmp")
            try:
                os.write(fd, b"probe")
            finally:
                os.close(fd)
                Path(probe).unlink(missing_ok=True)
        except OSError as error:
            raise type(error)(error.errno, f"cannot write to the {what} {folder}: {error.strerror or error}") from None
        free = shutil.disk_usage(folder).free
        if free < min_free:
            raise OSError(errno.ENOSPC, f"the {what} {folder} has only {free / 2**20:.0f} MiB free, "
                                        f"at least {min_free / 2**20:.0f} MiB are needed"
                                        + (f" ({needed_for})" if needed_for else "")
                                        + "; free some room or choose another folder")
    finally:
        for path in reversed(created):  # deepest first; only folders this call made, and only when still empty
            try:
                path.rmdir()
            except OSError:
                break
    return folder


def write_json(path: str | Path, data) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")

    return atomic_write(path, write)


def read_json(path: str | Path):
    with open(path) as f:
        return json.load(f)


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Save tensors as safetensors (contiguous CPU copies), atomically.

    A failed write (a full disk ...) raises OSError naming the file, as a failed JSON write does; safetensors
    itself raises its own SafetensorError with the OS error inside its message."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        try:
            save_file(cpu, tmp, metadata=metadata)
        except SafetensorError as error:
            number = _os_error_number(str(error))
            if number is None:
                raise
            raise OSError(number, os.strerror(number), str(path)) from error

    return atomic_write(path, write)


def _os_error_number(message: str) -> int | None:
    """The errno inside a SafetensorError's text ("... (os error 28)", "Os { code: 28, ... }"), if any."""
    found = re.search(r"os error (\d+)|\bcode: (\d+)", message)
    if found:
        return int(found.group(1) or found.group(2))
    return errno.ENOSPC if "No space left on device" in message else None


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def read_tensors_and_metadata(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a safetensors file and the string metadata stored with them (empty when none)."""
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})


def read_tensor_metadata(path: str | Path) -> dict[str, str]:
    """Only the string metadata of a safetensors file (its header; no tensor is read)."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
