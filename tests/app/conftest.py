"""Fixtures of the app's tests: checkpoints for the tabs, the page's components, the app served, a browser.

The checkpoints and the served app are made once for all of ``tests/app/``
(package scope): the demo checkpoint (checkpoints/metal_plate) when it is there,
or a tiny one trained here (seconds), plus a tiny ``rd`` variant so the ablation
tab can compare variants, a tiny ``rd`` of a second product (tire) so switching
products is tested whatever is shipped, plus a broken checkpoint whose message
must show in the page. Pages open on the demo product (:func:`support.pick_demo`). ``alice`` (a fine-tune made through the handler) and ``page``
(Chromium) are per test module, like the state they carry.
"""

from __future__ import annotations

import pytest
from helpers import MPDD, TIRE

from rdexpert.app.registry import Registry

from .support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DEMO,
    ROOT,
    free_port,
    mpdd_zip,
    pick_demo,
    session_request,
    skip_without_mpdd,
)


@pytest.fixture(scope="package")
def app_checkpoints(tmp_path_factory) -> dict:
    """Checkpoints for the page: the demo one when shipped (else a tiny one), a tiny ``rd``, and a broken one."""
    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"shared MPDD data not found at {MPDD}")
    from rdexpert.training.loop import TrainConfig, Trainer

    folder = tmp_path_factory.mktemp("app_checkpoints")
    variants = ["rd"] if (DEMO / "config.json").is_file() else ["full", "rd"]
    for variant in variants:
        Trainer(
            TrainConfig(
                data_root=str(MPDD),
                category="metal_plate",
                out=str(folder / f"tiny_{variant}"),
                variant=variant,
                iterations=2,
                image_size=64,
                batch_size=2,
            ),
            progress=False,
        ).fit()
    if TIRE.is_dir():  # a second product
        Trainer(TrainConfig(data_root=str(TIRE.parent), category=TIRE.name, out=str(folder / "tiny_tire_rd"),
                            variant="rd", iterations=2, image_size=64, batch_size=2), progress=False).fit()
    (folder / "broken").mkdir()
    (folder / "broken" / "config.json").write_text("{ this is not json")
    return {"folder": folder, "demo": (DEMO / "config.json").is_file()}


@pytest.fixture(scope="package")
def app_registry(app_checkpoints) -> Registry:
    """The page's checkpoints, for calling the tab handlers directly."""
    registry = Registry(device="cpu")
    if app_checkpoints["demo"]:
        registry.scan(DEMO, source="shipped")
    registry.scan(app_checkpoints["folder"])
    return registry


@pytest.fixture(scope="package")
def parts(tmp_path_factory):
    """The components of a page (``rdexpert.app.ui.Page``) that handlers key their results by, to call them
    without a browser (a page without checkpoints: the handlers take the registry they use)."""
    from rdexpert.app.ui import AppConfig, build_demo

    return build_demo(AppConfig(registry=Registry(), workdir=tmp_path_factory.mktemp("parts"))).rdx_page


@pytest.fixture(scope="package")
def served_app(app_checkpoints, tmp_path_factory):
    """The app launched on a free localhost port: (demo, url)."""
    from rdexpert.app.server import build_app, launch, parse_args

    args = parse_args(
        [
            "--checkpoints",
            str(app_checkpoints["folder"]),
            "--port",
            str(free_port()),
            "--workdir",
            str(tmp_path_factory.mktemp("app_work")),
        ]
        + ([] if app_checkpoints["demo"] else ["--no-demo"])
    )
    args.hub_repo = None
    demo = build_app(args, root=ROOT)
    launch(demo, args, prevent_thread_lock=True, quiet=True)
    yield demo, f"http://127.0.0.1:{args.port}/"
    demo.close()


@pytest.fixture(scope="package")
def app_url(served_app):
    return served_app[1]


@pytest.fixture(scope="module")
def alice(served_app, tmp_path_factory, one_thread):
    """A tiny fine-tune made in the running app by the browser session "alice" (through the handler)."""
    from rdexpert.app.tab_finetune import finetune

    skip_without_mpdd()
    demo, url = served_app
    cfg, parts = demo.rdx_config, demo.rdx_page
    upload = mpdd_zip(tmp_path_factory.mktemp("alice") / "alice.zip", normal=4, defects=1, size=64)
    outputs = list(finetune(parts.finetune, cfg, [str(upload)], None, None, None, "rd", 64, 2, "alice-parts", False,
                            session_request("alice")))
    session = cfg.sessions.get(session_request("alice"))
    assert session.job is not None and session.job.status == "done", outputs[-1][parts.finetune.status]
    return {"cfg": cfg, "parts": parts, "url": url, "last": outputs[-1], "job": session.job, "session": session}


@pytest.fixture(scope="module")
def page(app_url):
    """The page in Chromium (1400 x 900), its examples loaded."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium not found at /usr/bin/chromium (apt-get install -y chromium); browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(60_000)
        tab.goto(app_url)
        tab.wait_for_selector("#rdx-examples button.thumbnail-item")
        pick_demo(tab)
        yield tab
        browser.close()
