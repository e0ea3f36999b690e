"""The Fine-tune tab's handlers (rdexpert.app.tab_finetune), without a browser: upload summary, progress and
cancel.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry  # noqa: E402

from .support import GRADIO_WARNINGS, png_bytes, session_request  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_upload_summary_is_a_count_and_a_size(tmp_path):
    from rdexpert.app.finetune_text import upload_summary

    one, two = tmp_path / "a.png", tmp_path / "b.zip"
    one.write_bytes(b"x" * 600_000)
    two.write_bytes(b"x" * 400_000)
    assert upload_summary([str(one), str(two)]) == "2 files, 1.0 MB"
    assert upload_summary([str(one)]) == "1 file, 600 kB" and upload_summary(None) == ""


def test_finetune_eta_is_measured_and_cancel_clears_it(tmp_path, monkeypatch, parts):
    """The time left comes from the iterations measured so far (a slow start does not count); once Cancel is
    pressed the status says so, with no "about N s left"."""
    import rdexpert.training.loop
    from rdexpert.app.tab_finetune import cancel, finetune
    from rdexpert.app.ui import AppConfig

    step, start_up = 0.05, 1.5

    class SlowStartTrainer:  # loads for 1.5 s, then 0.05 s per iteration, like a real run at a smaller scale
        def __init__(self, config, callback=None, **kwargs):
            time.sleep(start_up)
            self.config, self.callback = config, callback

        def fit(self):
            for iteration in range(1, self.config.iterations + 1):
                time.sleep(step)
                self.callback(iteration, {"student": 1.0 / iteration})

    monkeypatch.setattr(rdexpert.training.loop, "Trainer", SlowStartTrainer)
    good = []
    for i in range(3):
        good.append(tmp_path / f"{i}.png")
        good[-1].write_bytes(png_bytes(i))
    cfg, visitor = AppConfig(registry=Registry(), workdir=tmp_path / "work"), session_request("carol")
    ft = parts.finetune
    run = finetune(ft, cfg, [str(p) for p in good], None, None, None, "rd", 64, 2000, "eta", False, visitor)
    status = next(run)[ft.status]
    while cfg.sessions.get(visitor).job.snapshot()["iteration"] < 10:
        status = next(run)[ft.status]
    status = next(run)[ft.status]  # a line made after 10 iterations
    snap = cfg.sessions.get(visitor).job.snapshot()
    assert snap["status"] == "training" and snap["seconds_per_iteration"] < 3 * step  # the start-up left out
    left = float(re.search(r"about (\d+) s left", status).group(1))
    assert left == pytest.approx(snap["seconds_per_iteration"] * (2000 - snap["iteration"]), rel=0.5)
    assert "Cancelling" in cancel(cfg.sessions, visitor)
    after = [out[ft.status] for out in run]
    assert after and not any("s left" in line for line in after)
    assert "Cancelled at iteration" in after[-1] and 'data-status="cancelled"' in after[-1]


def test_a_downloaded_fine_tune_loads_back_into_its_page(tmp_path, app_checkpoints, parts):
    """Item 10: the zip the tab offers loads back (validated, every tensor checked), becomes this page's own
    checkpoint and is selected; a zip whose weights do not fit its config is refused, and nothing is kept."""
    from rdexpert.app.finetune import zip_checkpoint
    from rdexpert.app.tab_finetune import load_zip
    from rdexpert.app.ui import AppConfig

    from .support import ROOT, zip_files

    source = tmp_path / "my-parts-20250101-120000-1a2b3c"  # as the tab names a fine-tune's folder
    shutil.copytree(app_checkpoints["folder"] / "tiny_rd", source, ignore=shutil.ignore_patterns("resume"))
    archive = zip_checkpoint(source, tmp_path / "download.zip")
    cfg = AppConfig(registry=Registry(device="cpu"), workdir=tmp_path / "work")
    ft, picker = parts.finetune, parts.header.checkpoint
    out = load_zip(ft, picker, cfg, str(archive), session_request("bob"))
    registry = cfg.sessions.get(session_request("bob")).registry
    key = out[picker].value
    assert "Loaded" in out[ft.load_status] and key in registry.choices() and key.startswith("my-parts")
    assert registry.get(key).source == "loaded" and registry.is_loaded(key)
    assert key in [value for value, _ in out[ft.base].choices] and key not in cfg.registry.choices()  # its own

    shipped = ROOT / "checkpoints" / "metal_plate_full_128px" / "model.safetensors"
    if shipped.is_file():  # rd's config with the full model's weights: refused when the tensors are checked
        wrong = zip_files(tmp_path / "wrong.zip", {"m/config.json": (source / "config.json").read_bytes(),
                                                   "m/model.safetensors": shipped.read_bytes()})
        before = registry.choices()
        out = load_zip(ft, picker, cfg, str(wrong), session_request("bob"))
        assert "Not loaded" in out[ft.load_status] and picker not in out and registry.choices() == before
        loaded = cfg.sessions.get(session_request("bob")).folder / "loaded"
        assert len(list(loaded.iterdir())) == 1  # the refused one's files were removed


def test_the_finished_text_says_which_reference_and_what_the_threshold_means():
    """Item 6: in plain words, when the run ends: the reference the model scores against and why, and what the
    calibration data says (with the warning when most synthetic defects would pass)."""
    from rdexpert.app.finetune_text import outcome_text
    from rdexpert.checkpoint.folder import CheckpointInfo

    config = {
        "model": {"variant": "full", "default_reference": "expert"},
        "health": {"final": {"separation_teacher": 0.447, "separation_expert": 0.798},
                   "reason": "trained teacher lost to the frozen expert"},
        "calibration": {"threshold": 2.0, "low": 1.0, "source": "held-out normal training images",
                        "method": "normal images + synthetic anomalies", "holdout_scores": [1.1, 1.2, 1.5],
                        "synthetic_scores": [1.2, 1.4, 1.6, 2.5]},
    }
    text = outcome_text(CheckpointInfo.from_config(config))
    assert "Scores against the frozen expert" in text and "teacher 0.45, expert 0.80" in text
    assert "0.5 is chance" in text and "did not help" in text
    assert "set on 3 held-out normal image(s)" in text and "Of 4 synthetic defects, 3 score below it" in text
    assert "⚠ Warning" in text
