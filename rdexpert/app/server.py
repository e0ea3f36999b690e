"""Build the app from command-line flags / environment and launch it.

The workdir (uploads and fine-tunes, one folder per browser session) is never
served: it is not in ``allowed_paths`` and is in ``blocked_paths``; a
fine-tune's zip reaches its own page through gradio's upload cache. Its size
and age are bounded by ``--workdir-budget-mb`` and ``--workdir-max-age-hours``.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

from rdexpert.app.examples import ExampleSet
from rdexpert.app.registry import Registry, public_text
from rdexpert.cli.flags import add_backend, add_device

HUB_ENV = "RDEXPERT_HUB_REPO"
QUEUE_CONCURRENCY = 2

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py", description="The rdexpert Gradio app.")
    parser.add_argument(
        "--hub-repo",
        default=os.environ.get(HUB_ENV),
        help=f"ORG/NAME[@REV] on the Hugging Face Hub whose <category>/ folders are checkpoints (default: ${HUB_ENV})",
    )
    parser.add_argument(
        "--checkpoints",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of checkpoints (each subfolder with config.json), or one checkpoint; repeatable",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (needs the internet)")
    add_device(parser)
    add_backend(parser)  # Inspect only: the walkthrough's switches always run in torch
    parser.add_argument("--workdir", default=None, help="where fine-tune uploads and checkpoints go (default runs/app)")
    parser.add_argument(
        "--workdir-budget-mb",
        type=float,
        default=500.0,
        metavar="MB",
        help="when a fine-tune starts, delete finished sessions' folders, oldest first, until the workdir's "
        "sessions use at most this much (default 500; 0 or less: no size limit)",
    )
    parser.add_argument(
        "--workdir-max-age-hours",
        type=float,
        default=24.0,
        metavar="H",
        help="and delete finished sessions' folders older than this (default 24; 0 or less: no age limit)",
    )
    parser.add_argument("--no-demo", action="store_true", help="do not load the shipped checkpoints/ folder")
    return parser.parse_args(argv)


def build_app(args: argparse.Namespace | None = None, root: str | Path | None = None):
    """The gr.Blocks for ``args`` (defaults: the shipped checkpoints and $RDEXPERT_HUB_REPO)."""
    from rdexpert.app.ui import AppConfig, build_demo

    args = args if args is not None else parse_args([])
    root = Path(root) if root is not None else Path.cwd()
    registry = Registry(device=args.device, backend=args.backend)
    if not args.no_demo:
        shipped = root / "checkpoints"
        found = registry.scan(shipped, source="shipped", required=False)
        if not any(e.ok for e in found):
            message = (
                "No shipped checkpoint in `checkpoints/` could be read: "
                + public_text(next((e.error for e in found if e.error), "no config.json there"))
                + ". Use --checkpoints DIR, --hub-repo ORG/NAME, or fine-tune one."
            )
            registry.messages.append(message)  # the operator's (the page says only what a visitor can do)
            log.warning(message)
    for folder in args.checkpoints:
        registry.scan(folder, source="local")
    if args.hub_repo:
        registry.add_hub(args.hub_repo)
    workdir = Path(args.workdir) if args.workdir else root / "runs" / "app"
    # fine-tunes of earlier runs are not loaded: each belonged to a browser session that is gone
    budget = getattr(args, "workdir_budget_mb", 500.0)
    max_age = getattr(args, "workdir_max_age_hours", 24.0)
    config = AppConfig(
        registry=registry,
        examples=ExampleSet.scan(root / "assets" / "examples"),
        workdir=workdir,
        search_roots=[root],
        workdir_budget_mb=budget if budget is not None and budget > 0 else None,
        workdir_max_age_hours=max_age if max_age is not None and max_age > 0 else None,
    )
    demo = build_demo(config)
    # Inspect/Ablations/Evaluate share two workers; fine-tuning has its own concurrency id with limit 1
    # (set on its event), so one training run never blocks inspection for others.
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=64)
    return demo


def warm_up(demo) -> threading.Thread:
    """Load the default checkpoint in the background so the first request does not wait for it."""
    registry = demo.rdx_config.registry
    choices = registry.choices()

    def load():
        if choices:
            try:
                registry.predictor(choices[0])
            except Exception:  # shown in the page when used
                pass

    thread = threading.Thread(target=load, name="rdexpert-warm-up", daemon=True)
    thread.start()
    return thread


def launch(demo, args: argparse.Namespace, **kwargs):
    from rdexpert.app.ui import CSS, theme

    cfg = demo.rdx_config
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    assets = [str(cfg.examples.root)] if cfg.examples.root is not None and cfg.examples.products else []
    return demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        css=CSS,
        theme=theme(),
        allowed_paths=assets,  # the example images only; never the workdir
        blocked_paths=[str(cfg.workdir.resolve())],
        max_file_size="200mb",
        footer_links=["gradio", "settings"],
        **kwargs,
    )


def main(argv: list[str] | None = None, demo=None, root: str | Path | None = None):
    """Parse flags; reuse ``demo`` when the flags match the defaults it was built with, else rebuild."""
    args = parse_args(argv)
    if demo is None or args != parse_args([]):
        demo = build_app(args, root=root)
    warm_up(demo)
    return launch(demo, args)
