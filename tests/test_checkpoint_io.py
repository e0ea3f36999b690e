"""rdexpert.checkpoint.io: atomic writes, JSON and tensor files, the writable-folder check."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors import safe_open

from rdexpert.checkpoint.io import atomic_write, check_writable, read_json, read_tensors, write_json, write_tensors


def _usual_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# -- atomic_write ---------------------------------------------------------------------------------
def test_atomic_write_creates_the_folder_and_gives_the_file_the_usual_permissions(tmp_path):
    path = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write(path, lambda tmp: open(tmp, "w").write("done")) == path
    assert path.read_text() == "done"
    assert stat.S_IMODE(path.stat().st_mode) == _usual_mode()  # not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]  # no temporary file left


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_writer_that_raises_leaves_the_old_file_and_no_partial_one(tmp_path, error):
    path = tmp_path / "config.json"
    path.write_text("old")

    def half_then_fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "new.bin", lambda tmp: (open(tmp, "wb").write(b"x"), int("not a number")))
    assert list(tmp_path.iterdir()) == []


# -- JSON -----------------------------------------------------------------------------------------
def test_json_round_trip_keeps_values_and_key_order(tmp_path):
    data = {"z": 1, "a": [0.1, 2.5e-7, None, True], "nested": {"ünïcode": "métal", "empty": {}}}
    path = write_json(tmp_path / "x.json", data)
    assert read_json(path) == data and list(read_json(path)) == ["z", "a", "nested"]
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "z": 1')  # indented, one final newline


def test_json_that_cannot_be_serialised_keeps_the_previous_file(tmp_path):
    path = write_json(tmp_path / "config.json", {"version": 1})
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(path, {"version": 2, "bad": object()})  # fails half-way through json.dump
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


# -- tensor files ---------------------------------------------------------------------------------
def test_tensor_round_trip_keeps_dtypes_values_and_metadata(tmp_path):
    g = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(3, 4, generator=g))  # requires grad: saved detached
    tensors = {
        "weight": weight,
        "transposed": torch.randn(4, 5, generator=g).t(),  # not contiguous
        "half": torch.randn(7, generator=g).half(),
        "count": torch.arange(5, dtype=torch.int64),
        "flags": torch.tensor([True, False, True]),
    }
    path = write_tensors(tmp_path / "w.safetensors", tensors, metadata={"format": "pt", "note": "x"})
    back = read_tensors(path)
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor.detach()), name
    assert not back["weight"].requires_grad
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}


def test_a_tensor_file_that_cannot_be_written_leaves_the_previous_one(tmp_path):
    path = write_tensors(tmp_path / "w.safetensors", {"a": torch.ones(2)})
    shared = torch.zeros(4)
    with pytest.raises(RuntimeError, match="share memory"):  # safetensors refuses aliases, inside atomic_write
        write_tensors(path, {"a": shared, "b": shared})
    assert torch.equal(read_tensors(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


# -- check_writable -------------------------------------------------------------------------------
def test_out_folder_without_free_room_is_refused_and_nothing_is_left_behind(tmp_path):
    folder = tmp_path / "new" / "deeper"
    assert check_writable(folder) == folder and folder.is_dir() is False  # probed, then tidied away
    with pytest.raises(OSError, match=r"has only \d+ MiB free, at least \d+ MiB are needed"):
        check_writable(folder, min_free=2**62)
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    check_writable(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []  # probe file deleted


def test_a_file_in_the_way_is_refused_with_the_folder_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(NotADirectoryError, match=r"cannot write to the output folder .*file/sub"):
        check_writable(blocker / "sub")
    assert blocker.read_text() == "keep me"
