"""The Fine-tune tab's handlers (rdexpert.app.tab_finetune), without a browser: upload summary, progress and
cancel.
"""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry  # noqa: E402

from .support import GRADIO_WARNINGS, png_bytes, session_request  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_upload_summary_is_a_count_and_a_size(tmp_path):
    from rdexpert.app.tab_finetune import upload_summary

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
