"""Fine-tune jobs (rdexpert.app.finetune): cancelled, failed, zipped; a failure is a message without server paths.
"""

from __future__ import annotations

import time
import zipfile

import pytest

pytest.importorskip("gradio")

from rdexpert.app.finetune import FineTuneJob, FineTuneSettings, zip_checkpoint  # noqa: E402
from rdexpert.app.registry import Registry  # noqa: E402
from rdexpert.app.uploads import prepare_dataset  # noqa: E402

from helpers import MPDD  # noqa: E402

from .support import GRADIO_WARNINGS, mpdd_zip  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_zip_checkpoint_leaves_out_the_resume_state(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "resume").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    (folder / "resume" / "state.safetensors").write_bytes(b"x")
    with zipfile.ZipFile(zip_checkpoint(folder)) as zf:
        assert sorted(zf.namelist()) == ["ckpt/config.json", "ckpt/model.safetensors"]


def test_finetune_job_can_be_cancelled(tmp_path):
    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"shared MPDD data not found at {MPDD}")
    data = prepare_dataset(tmp_path / "data", [mpdd_zip(tmp_path / "up.zip", normal=4, defects=0, size=64)])
    job = FineTuneJob(FineTuneSettings(name="t", variant="rd", image_size=64, iterations=500), data, tmp_path / "out")
    job.start()
    deadline = time.time() + 120
    while job.snapshot()["iteration"] < 2 and job.running and time.time() < deadline:
        time.sleep(0.1)
    job.cancel()
    assert job.wait(120)
    assert job.status == "cancelled", job.error
    assert 2 <= job.iteration < 500
    assert (tmp_path / "out" / "resume" / "state.json").is_file()  # the trainer kept a resumable state


def test_zip_checkpoint_leaves_no_temporary_file_when_writing_fails(tmp_path, monkeypatch):
    """D3: a full disk while zipping leaves neither the .zip.tmp nor a partial zip behind."""
    import errno

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 1000)

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        zip_checkpoint(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_failed_job_and_a_full_disk_are_messages_without_paths(tmp_path, monkeypatch, parts):
    """D6/D3: training that fails names no server path; an upload the disk cannot hold is a message."""
    import errno

    import rdexpert.training.loop
    from rdexpert.app import tab_finetune
    from rdexpert.app.ui import AppConfig
    from rdexpert.app.uploads import UploadedDataset

    class FailingTrainer:
        def __init__(self, config, **kwargs):
            raise OSError(f"cannot read {tmp_path}/uploads/normal/part_07.png")

    monkeypatch.setattr(rdexpert.training.loop, "Trainer", FailingTrainer)
    job = FineTuneJob(FineTuneSettings(name="t", iterations=2, image_size=64), UploadedDataset(tmp_path), tmp_path / "o")
    job.start()
    assert job.wait(60) and job.status == "failed"
    assert "part_07.png" in job.error and str(tmp_path) not in job.error

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tab_finetune, "prepare_dataset", full_disk)
    cfg = AppConfig(registry=Registry(), workdir=tmp_path / "work")
    ft = parts.finetune
    status = next(tab_finetune.finetune(ft, cfg, ["x.png"], None, None, None, "rd", 64, 2, "t", False, None))[ft.status]
    assert "could not store your upload" in status and "No space left" in status
