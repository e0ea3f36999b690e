"""Browser sessions own their fine-tunes (rdexpert.app.sessions): a second visitor neither lists, loads nor
downloads the first one's, the workdir is never served, and it stays within its budget.

The handlers are called as two browser sessions (``gr.Request`` with two
session hashes) and files are fetched from the running server over HTTP.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from .support import EXAMPLES, GRADIO_WARNINGS, ROOT, page_text, session_request  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_fine_tunes_belong_to_the_session_that_made_them(alice):
    """D1: a second visitor neither lists nor loads the first one's fine-tune; no server path is shown."""
    import gradio as gr

    from rdexpert.app.header import describe_selected
    from rdexpert.app.sessions import folder_name
    from rdexpert.app.tab_evaluate import evaluate_selected
    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.tab_inspect import inspect_files
    from rdexpert.app.ui import refresh

    cfg, job, last, parts = alice["cfg"], alice["job"], alice["last"], alice["parts"]
    sessions, workdir = cfg.sessions, cfg.workdir.resolve()
    ft, view, top = parts.finetune, parts.inspect.view, parts.header
    status, result, download = last[ft.status], last[ft.metrics], last[ft.download]
    assert "Done in" in status and "alice-parts" in result
    key = next(k for k in sessions.registry_for(session_request("alice")).choices() if "alice-parts" in k)
    # files in alice's own folder; the page shows names, never server paths
    assert job.out.resolve().is_relative_to(workdir / "sessions" / folder_name("alice"))
    shown = page_text([status, result, describe_selected(sessions, key, session_request("alice"))])
    assert str(workdir) not in shown and str(job.out) not in shown and "fine-tuned" in shown
    # the download is a copy in gradio's upload cache, not a workdir path
    assert download and not Path(download).resolve().is_relative_to(workdir)
    # alice lists and uses it
    assert key in refresh(top, ft.base, sessions, session_request("alice"))[top.checkpoint].constructor_args["choices"]
    example = str(EXAMPLES / "good_test_00003.png")
    out = inspect_files(view, sessions, key, [example], 0.5, session_request("alice"))
    state, message = out[view.state], out[view.message]
    assert state is not None and state.key == key, message

    # bob: a fresh session
    bob = session_request("bob")
    fresh = refresh(top, ft.base, sessions, bob)
    checkpoint, base = fresh[top.checkpoint], fresh[ft.base]
    assert not any("alice" in str(c) for c in checkpoint.constructor_args["choices"])
    assert not any("alice" in str(c) for c in base.constructor_args["choices"])
    assert not any("alice" in k for k in cfg.registry.choices())  # nothing in the shared list either
    out = inspect_files(view, sessions, key, [example], 0.5, bob)
    state, message = out[view.state], out[view.message]
    assert state is None and "unknown checkpoint" in message
    evaluated = evaluate_selected(parts.evaluate, sessions, collections.OrderedDict(), [ROOT], key, bob)
    assert "Cannot evaluate" in evaluated[parts.evaluate.summary]
    assert "unknown checkpoint" in describe_selected(sessions, key, bob)
    upload = [str(EXAMPLES / "good_test_00003.png"), str(EXAMPLES / "good_test_00012.png")]
    status = next(finetune(ft, cfg, upload, None, None, key, "rd", 64, 2, "bob", False, bob))[ft.status]
    assert "unknown checkpoint" in status  # not even as "Start from"
    assert isinstance(refresh(top, ft.base, sessions, bob)[top.checkpoint], gr.Dropdown)


def test_warm_start_fine_tune_begins_from_the_chosen_checkpoint(alice):
    """"Warm start" with a checkpoint in "Start from": the run begins from its trained weights, and says so."""
    import json

    from rdexpert.app.tab_finetune import finetune

    cfg, request, ft = alice["cfg"], session_request("alice"), alice["parts"].finetune
    base = next(k for k in cfg.sessions.registry_for(request).choices() if "alice-parts" in k)
    upload = [str(EXAMPLES / "good_test_00003.png"), str(EXAMPLES / "good_test_00012.png")]
    outputs = list(finetune(ft, cfg, upload, None, None, base, "rd", 64, 1, "alice-warm", True, request))
    job = cfg.sessions.get(request).job
    assert job.status == "done", outputs[-1][ft.status]
    assert "warm start" in " ".join(str(o) for o in outputs[0].values() if isinstance(o, str))
    training = json.loads((job.out / "config.json").read_text())["training"]
    assert training["warm_start"]["source"] == str(alice["job"].out)
    assert training["warm_start"]["tensors"] == training["warm_start"]["of"]


def test_workdir_files_are_not_served_and_the_download_only_to_its_owner(alice):
    """D1 over HTTP: the workdir is not served (weights, config, zip, uploaded images); the owner's link is."""
    import urllib.error
    import urllib.parse
    import urllib.request

    cfg, job, url = alice["cfg"], alice["job"], alice["url"]

    def status_of(path) -> int:
        try:
            with urllib.request.urlopen(f"{url}gradio_api/file={urllib.parse.quote(str(path))}", timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as error:
            return error.code

    uploaded = next((alice["session"].folder / "uploads").rglob("*.png"))
    private = [job.out / "model.safetensors", job.out / "config.json", job.archive, uploaded]
    for path in private:
        assert path.is_file() and status_of(path) in (403, 404), path
    download = alice["last"][alice["parts"].finetune.download]
    assert status_of(download) == 200  # the zip handed to alice's download component
    with urllib.request.urlopen(f"{url}config", timeout=30) as r:  # what a fresh page is built from
        page = r.read().decode()
    assert "alice-parts" not in page and str(cfg.workdir.resolve()) not in page


def test_workdir_cleanup_deletes_finished_session_folders_oldest_first(tmp_path):
    """D3: too old folders go, then the oldest finished ones until within budget; open sessions stay."""
    import os

    from rdexpert.app.sessions import cleanup_workdir

    now = time.time()
    hours = {"ancient": 240, "old": 5, "older": 6, "open": 300, "new": 0.1}
    for name, age in hours.items():
        (tmp_path / name / "finetuned").mkdir(parents=True)
        (tmp_path / name / "finetuned" / "model.safetensors").write_bytes(b"\0" * 300_000)
        os.utime(tmp_path / name, (now - age * 3600, now - age * 3600))
    (tmp_path / "stray.txt").write_text("not a session folder")
    deleted = cleanup_workdir(tmp_path, budget_mb=0.6, max_age_hours=24, active={"open"}, now=now)
    # ancient: too old; then 4 x 300 kB is over 0.6 MB (open sessions count): the oldest finished ones,
    # "older" then "old", until 2 x 300 kB remain; "open" is older than all but is in use
    assert [p.name for p in deleted] == ["ancient", "older", "old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "open", "stray.txt"]
    assert cleanup_workdir(tmp_path, budget_mb=None, max_age_hours=None) == []
    assert cleanup_workdir(tmp_path / "absent") == []
