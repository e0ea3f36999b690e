"""Building and launching the app (rdexpert.app.server, app.py): flags, settings, and which events are API
endpoints.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gradio")

from .support import DEMO, GRADIO_WARNINGS, ROOT  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_app_module_exposes_demo_and_main(monkeypatch):
    import runpy

    import gradio as gr

    monkeypatch.delenv("RDEXPERT_HUB_REPO", raising=False)
    namespace = runpy.run_path(str(ROOT / "app.py"), run_name="app")  # not __main__: nothing is launched
    assert isinstance(namespace["demo"], gr.Blocks) and callable(namespace["main"])
    demo = namespace["demo"]
    functions = {f.name: f for f in (demo.fns.values() if isinstance(demo.fns, dict) else demo.fns)}
    assert (functions["finetune"].concurrency_id, functions["finetune"].concurrency_limit) == ("finetune", 1)
    assert functions["inspect_files"].concurrency_id != "finetune"
    assert demo._queue.default_concurrency_limit == 2
    registry = demo.rdx_config.registry
    if (DEMO / "config.json").is_file():
        assert any(registry.get(k).source == "shipped" for k in registry.choices())
    else:
        assert any("demo checkpoint" in m for m in registry.messages)


def test_command_line_flags(monkeypatch):
    from rdexpert.app.server import parse_args

    monkeypatch.setenv("RDEXPERT_HUB_REPO", "org/from-env")
    args = parse_args(["--checkpoints", "a", "--checkpoints", "b", "--host", "0.0.0.0", "--port", "9000", "--share"])
    assert args.checkpoints == ["a", "b"] and args.hub_repo == "org/from-env"
    assert (args.host, args.port, args.share) == ("0.0.0.0", 9000, True)
    assert parse_args(["--hub-repo", "org/x"]).hub_repo == "org/x"


def test_workdir_budget_flags_and_launch_settings(tmp_path, monkeypatch):
    from rdexpert.app.server import build_app, parse_args

    defaults = parse_args([])
    assert (defaults.workdir_budget_mb, defaults.workdir_max_age_hours) == (500.0, 24.0)
    args = parse_args(["--workdir", str(tmp_path), "--workdir-budget-mb", "50", "--workdir-max-age-hours", "0",
                       "--no-demo"])
    monkeypatch.delenv("RDEXPERT_HUB_REPO", raising=False)
    args.hub_repo = None
    cfg = build_app(args, root=ROOT).rdx_config
    assert (cfg.workdir_budget_mb, cfg.workdir_max_age_hours) == (50.0, None)
    assert cfg.sessions.root == tmp_path / "sessions"


def test_internal_events_are_not_api_endpoints(served_app):
    """Only Inspect (uploaded images) and Evaluate are API endpoints: no fine-tune, cancel, redraws, loads."""
    import urllib.request

    demo, url = served_app
    named = set(demo.get_api_info()["named_endpoints"])
    assert named == {"/inspect_files", "/evaluate_checkpoint"}
    with urllib.request.urlopen(f"{url}gradio_api/info", timeout=30) as r:
        served = json.loads(r.read())
    assert set(served["named_endpoints"]) == named and not served["unnamed_endpoints"]
