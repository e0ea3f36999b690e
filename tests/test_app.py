"""The Gradio app: upload validation, fine-tune jobs and registry as plain Python, then the real page in Chromium.

The browser tests start the app in this process on a free localhost port, with
the shipped demo checkpoint (checkpoints/metal_plate) when it is there, or a tiny
checkpoint trained here (seconds), plus a tiny ``rd`` variant so the ablation tab
can compare variants, plus a broken checkpoint whose message must show in the
page. Screenshots of every tab go to tests/artifacts/ (gitignored).

The hardening tests call the handlers as two browser sessions (``gr.Request``
with two session hashes) and fetch files from the running server over HTTP: a
fine-tune belongs to the session that made it, the workdir is never served, big
or broken uploads are messages, and the workdir stays within its budget.

Browser tests need Debian's Chromium at /usr/bin/chromium (``apt-get install -y
chromium``); without it they are skipped, with that reason.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import re
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
# gradio's own queue code trips pandas 3 deprecation warnings; not ours to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    # gradio's track_tqdm patch closes a tqdm it did not set up (Evaluate's progress); not ours to fix
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function tqdm.__del__:pytest.PytestUnraisableExceptionWarning"
    ),
]

from rdexpert.app.finetune import FineTuneJob, FineTuneSettings, zip_checkpoint  # noqa: E402
from rdexpert.app.registry import Registry, flatten_metrics  # noqa: E402
from rdexpert.app.uploads import UploadError, UploadLimits, check_zip_entry_name, prepare_dataset  # noqa: E402
from rdexpert.app.views import roc_points  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MPDD = ROOT.parent / "shared" / "data" / "mpdd"
DEMO = ROOT / "checkpoints" / "metal_plate"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _png_bytes(seed: int = 0, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _mpdd_zip(path: Path, normal: int = 5, defects: int = 2, size: int = 96) -> Path:
    """A small upload made of real MPDD metal_plate images: good/, defect/ and mask/ folders."""
    cat = MPDD / "metal_plate"

    def png(p: Path, mode: str = "RGB") -> bytes:
        buffer = io.BytesIO()
        Image.open(p).convert(mode).resize((size, size)).save(buffer, format="PNG")
        return buffer.getvalue()

    entries = {f"parts/good/{p.name}": png(p) for p in sorted((cat / "train" / "good").glob("*.png"))[:normal]}
    for p in sorted((cat / "test" / "defect").glob("*.png"))[:defects]:
        entries[f"parts/defect/{p.name}"] = png(p)
        entries[f"parts/mask/{p.stem}_mask.png"] = png(cat / "ground_truth" / "defect" / f"{p.stem}_mask.png", "L")
    return _zip(path, entries)


# ---------------------------------------------------------------------------------------------
# uploads: plain Python
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/evil.png", "..\\evil.png"])
def test_zip_entry_names_outside_the_archive_are_refused(name):
    with pytest.raises(UploadError):
        check_zip_entry_name(name)


def test_traversal_zip_is_refused_before_anything_is_written(tmp_path):
    archive = _zip(
        tmp_path / "evil.zip",
        {"good/a.png": _png_bytes(0), "good/b.png": _png_bytes(1), "../../escaped.png": _png_bytes(2)},
    )
    with pytest.raises(UploadError, match=r"outside the archive"):
        prepare_dataset(tmp_path / "dest", [archive])
    assert not (tmp_path / "dest").exists() and not (tmp_path.parent / "escaped.png").exists()


def test_non_images_and_fake_images_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, p in enumerate(good):
        p.write_bytes(_png_bytes(i))
    with pytest.raises(UploadError, match="not an image file"):
        prepare_dataset(tmp_path / "d1", [*good, text])
    with pytest.raises(UploadError, match="could not be read as an image"):
        prepare_dataset(tmp_path / "d2", [*good, fake])
    archive = _zip(tmp_path / "mixed.zip", {"a.png": _png_bytes(0), "b.png": _png_bytes(1), "run.sh": b"rm -rf /"})
    with pytest.raises(UploadError, match="not an image"):
        prepare_dataset(tmp_path / "d3", [archive])


def test_archive_limits(tmp_path):
    many = _zip(tmp_path / "many.zip", {f"{i}.png": _png_bytes(i, 8) for i in range(12)})
    with pytest.raises(UploadError, match="entries"):
        prepare_dataset(tmp_path / "d1", [many], limits=UploadLimits(max_archive_entries=10))
    with pytest.raises(UploadError, match="MB"):
        prepare_dataset(tmp_path / "d2", [many], limits=UploadLimits(max_archive_mb=1e-4))
    with pytest.raises(UploadError, match="unpack"):
        prepare_dataset(tmp_path / "d3", [many], limits=UploadLimits(max_unpacked_mb=1e-4))
    with pytest.raises(UploadError, match="pixels"):
        prepare_dataset(tmp_path / "d4", [many], limits=UploadLimits(max_image_pixels=10))
    with pytest.raises(UploadError, match="limit is 5"):
        prepare_dataset(tmp_path / "d5", [many], limits=UploadLimits(max_normal_images=5))
    one = _zip(tmp_path / "one.zip", {"a.png": _png_bytes(0)})
    with pytest.raises(UploadError, match="at least 2"):
        prepare_dataset(tmp_path / "d6", [one])


def test_zip_layout_is_sorted_into_normal_defect_and_mask(tmp_path):
    archive = _zip(
        tmp_path / "parts.zip",
        {
            "parts/a.png": _png_bytes(0),
            "parts/good/b.png": _png_bytes(1),
            "parts/good/b (copy).png": _png_bytes(2),
            "parts/defect/x.png": _png_bytes(3),
            "parts/mask/x_mask.png": _png_bytes(4),
            "__MACOSX/parts/._a.png": b"junk",
            "parts/.DS_Store": b"junk",
        },
    )
    data = prepare_dataset(tmp_path / "dest", [archive])
    assert sorted(p.name for p in data.normal) == ["a.png", "b.png", "b_copy.png"]
    assert [p.name for p in data.defect] == ["x.png"] and data.matched_masks() == 1
    assert len(data.skipped) == 2
    assert all(
        p.resolve().is_relative_to((tmp_path / "dest").resolve()) for p in data.normal + data.defect + data.masks
    )


# ---------------------------------------------------------------------------------------------
# registry, metrics, archives
# ---------------------------------------------------------------------------------------------
def test_broken_and_missing_checkpoints_become_messages(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{ not json")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps({"model": {"variant": "full"}}))
    registry = Registry()
    registry.scan(tmp_path)
    registry.scan(tmp_path / "absent")
    assert registry.choices() == []
    text = "\n".join(registry.messages)
    assert "broken" in text and "model.safetensors" in text and "absent" in text


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


def test_test_split_is_found_from_the_checkpoint_config(tmp_path):
    from rdexpert.app.evaluation import NoTestSplit, labelled_samples
    from rdexpert.app.registry import Entry

    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"shared MPDD data not found at {MPDD}")
    config = {"model": {"variant": "full"}, "dataset": {"root": "../shared/data/mpdd", "category": "metal_plate"}}
    samples, text = labelled_samples(Entry("k", "ref", "local", config=config), search=[ROOT])
    assert len(samples) == 107 and sum(s.label for s in samples) == 81 and "metal_plate" in text
    missing = {"model": {}, "dataset": {"root": str(tmp_path / "nowhere"), "category": "metal_plate"}}
    with pytest.raises(NoTestSplit, match="not on this machine"):
        labelled_samples(Entry("k", "ref", "local", config=missing), search=[ROOT])


def test_metrics_keyed_by_setting_are_read():
    assert flatten_metrics({"image_auroc": 0.9}) == {"image_auroc": 0.9}
    nested = {"expert/gated": {"image_auroc": 0.7}, "teacher/gated": {"image_auroc": 0.95, "aupro": 0.8}}
    assert flatten_metrics(nested) == {"image_auroc": 0.95, "aupro": 0.8}


def test_roc_points_match_the_auroc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # with ties
    fpr, tpr = roc_points(scores, labels)
    auc = np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr)
    from rdexpert.evaluation.metrics import roc_auc

    assert auc == pytest.approx(roc_auc(scores, labels), abs=1e-9)


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
    data = prepare_dataset(tmp_path / "data", [_mpdd_zip(tmp_path / "up.zip", normal=4, defects=0, size=64)])
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


def test_upload_summary_is_a_count_and_a_size(tmp_path):
    from rdexpert.app.tab_finetune import upload_summary

    one, two = tmp_path / "a.png", tmp_path / "b.zip"
    one.write_bytes(b"x" * 600_000)
    two.write_bytes(b"x" * 400_000)
    assert upload_summary([str(one), str(two)]) == "2 files, 1.0 MB"
    assert upload_summary([str(one)]) == "1 file, 600 kB" and upload_summary(None) == ""


def test_finetune_eta_is_measured_and_cancel_clears_it(tmp_path, monkeypatch):
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
        good[-1].write_bytes(_png_bytes(i))
    cfg, visitor = AppConfig(registry=Registry(), workdir=tmp_path / "work"), _request("carol")
    run = finetune(cfg, [str(p) for p in good], None, None, None, "rd", 64, 2000, "eta", False, visitor)
    status = next(run)[0]
    while cfg.sessions.get(visitor).job.snapshot()["iteration"] < 10:
        status = next(run)[0]
    status = next(run)[0]  # a line made after 10 iterations
    snap = cfg.sessions.get(visitor).job.snapshot()
    assert snap["status"] == "training" and snap["seconds_per_iteration"] < 3 * step  # the start-up left out
    left = float(re.search(r"about (\d+) s left", status).group(1))
    assert left == pytest.approx(snap["seconds_per_iteration"] * (2000 - snap["iteration"]), rel=0.5)
    assert "Cancelling" in cancel(cfg.sessions, visitor)
    after = [out[0] for out in run]
    assert after and not any("s left" in line for line in after)
    assert "Cancelled at iteration" in after[-1] and 'data-status="cancelled"' in after[-1]


# ---------------------------------------------------------------------------------------------
# checkpoints for the tabs' handlers and the page
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
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
    (folder / "broken").mkdir()
    (folder / "broken" / "config.json").write_text("{ this is not json")
    return {"folder": folder, "demo": (DEMO / "config.json").is_file()}


@pytest.fixture(scope="module")
def app_registry(app_checkpoints) -> Registry:
    """The page's checkpoints, for calling the tab handlers directly."""
    registry = Registry(device="cpu")
    if app_checkpoints["demo"]:
        registry.scan(DEMO, source="shipped")
    registry.scan(app_checkpoints["folder"])
    return registry


def _select(index):
    """The event gradio passes to a ``.select`` handler."""
    import gradio as gr

    return gr.SelectData(None, {"index": index, "value": None})


# ---------------------------------------------------------------------------------------------
# the tabs' handlers, without a browser
# ---------------------------------------------------------------------------------------------
def test_inspect_handler_returns_a_verdict_and_the_redraw_reuses_it(app_registry, monkeypatch):
    from rdexpert.app.header import first_choice
    from rdexpert.app.tab_inspect import OUTPUT_COUNT, InspectState, inspect, rerender, select_result

    key = first_choice(app_registry)
    paths = [str(ROOT / "assets" / "good_test_00003.png"), str(ROOT / "assets" / "defect_train_00066.png")]
    out = inspect(app_registry, key, paths, 0.5)
    assert len(out) == OUTPUT_COUNT
    state, gallery, picture, fused, *scales, verdict, info, message = out
    assert isinstance(state, InspectState) and state.key == key and state.selected == 0
    assert [item.name for item in state.items] == ["good_test_00003.png", "defect_train_00066.png"]
    item = state.items[0]
    assert item.path == paths[0] and item.normalized_map.shape == item.image.shape[:2]
    assert len(item.scale_maps) == len(scales) == 3 and fused.ndim == 3 and picture.ndim == 3
    assert state.device.startswith(("cpu", "cuda"))
    assert 'data-verdict="' in verdict and "calibrated score" in verdict and "threshold <b>0.50</b>" in verdict
    assert "2 images in" in verdict and message == "" and "good_test_00003.png" in info and key in info

    def no_network(*args, **kwargs):
        raise AssertionError("the network ran again")

    monkeypatch.setattr(app_registry, "predictor", no_network)
    for predictor in app_registry._predictors.values():
        monkeypatch.setattr(predictor, "predict", no_network)
    gallery, picture, fused_low, *scales, verdict, info = rerender(state, 0.01)
    assert "threshold <b>0.01</b>" in verdict and 'data-verdict="anomalous"' in verdict
    assert not np.array_equal(fused_low, fused) or item.normalized_map.max() < 0.01
    chosen, *rest = select_result(state, 0.5, _select(1))
    assert chosen.selected == 1 and state.selected == 0  # a new state; the old one is unchanged
    assert "defect_train_00066.png" in rest[-1]


def test_inspect_draws_a_non_square_image_at_its_own_aspect_ratio(app_registry, tmp_path):
    """The network sees a square, but the picture, the map and the scale maps are shown 4:3 as uploaded."""
    from rdexpert.app.header import first_choice
    from rdexpert.app.tab_inspect import inspect

    wide = tmp_path / "wide.png"
    Image.open(ROOT / "assets" / "defect_train_00066.png").convert("RGB").resize((400, 300)).save(wide)
    state, gallery, picture, fused, *scales, verdict, info, message = inspect(
        app_registry, first_choice(app_registry), [str(wide)], 0.5)
    item = state.items[0]
    assert item.original_size == (300, 400) and item.image.shape[0] == item.image.shape[1]  # the network's input
    for shown in (picture, fused, *scales):
        assert shown.shape[1] / shown.shape[0] == pytest.approx(4 / 3, abs=0.02)


def test_an_example_shows_its_ground_truth_beside_the_verdict(app_registry, tmp_path):
    """An example's caption is its ground truth; Inspect shows it beside the model's verdict, an upload without."""
    from rdexpert.app.header import first_choice
    from rdexpert.app.server import example_images
    from rdexpert.app.sessions import Sessions
    from rdexpert.app.tab_inspect import inspect, inspect_example

    examples = example_images(ROOT / "assets")
    normal, defective = (next(i for i, (_, c) in enumerate(examples) if c.startswith(w)) for w in ("normal", "defec"))
    sessions, key = Sessions(app_registry, tmp_path), first_choice(app_registry)
    for index, truth in ((normal, "normal"), (defective, "defective")):
        state, gallery, *_, verdict, info, message = inspect_example(sessions, examples, key, 0.5, _select(index))
        assert state.items[0].truth == truth and f"ground truth: <b>{truth}</b>" in verdict
        word = "ANOMALOUS" if 'data-verdict="anomalous"' in verdict else "NORMAL"
        assert f"model: <b>{word}</b>" in verdict
    *_, verdict, info, message = inspect(app_registry, key, [examples[defective][0]], 0.5)
    assert "calibrated score" in verdict and "ground truth" not in verdict  # uploaded: its truth is not known


def test_inspect_handler_refusals_are_messages(tmp_path):
    from rdexpert.app.tab_inspect import MAX_INSPECT_IMAGES, inspect

    fake = tmp_path / "scan.png"
    fake.write_text("not an image")
    key = "any"  # the requests below are refused before a checkpoint is used
    cases = [
        (None, [str(fake)], "Choose a checkpoint first"),
        (key, [], "Upload an image"),
        (key, [str(fake)] * (MAX_INSPECT_IMAGES + 1), "the limit is"),
        (key, [str(fake)], "not an image"),
        ("no such checkpoint", [str(ROOT / "assets" / "good_test_00003.png")], "Checkpoint error"),
    ]
    for k, sources, words in cases:
        state, *_, message = inspect(Registry(), k, sources, 0.5)
        assert state is None and words in message, (k, words, message)


def test_ablations_use_the_selected_inspect_image():
    from rdexpert.app.tab_ablations import ablation_source, custom_combination, walkthrough
    from rdexpert.app.tab_inspect import InspectItem, InspectState

    image, heat = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32)
    items = [InspectItem("a.png", "/x/a.png", image, heat, [], 0.1, 0.2), InspectItem("b", None, image, heat, [], 0, 0)]
    state = InspectState("k", items, seconds=1.0, device="cpu", raw_threshold=None, load_seconds=None)
    assert ablation_source(state, None) == "/x/a.png" and ablation_source(state, "ex.png") == "ex.png"
    assert ablation_source(state.select(5), None) is image  # clamped to the last item, which has no file
    assert ablation_source(None, None) is None
    out = walkthrough(Registry(), "k", None, None)
    assert "Pick an image" in out[0] and len(out) == 15  # message, 4 panels, 4 texts, gates, custom, variants (2 each)
    assert custom_combination(Registry(), "k", None, None, "teacher", "open") == (None, "Pick an image first.")


def test_ablations_show_the_gii_gate_and_each_switchs_difference(app_registry):
    """The default setting's gate s per gated scale, explained; the other panels state |map - default|."""
    from rdexpert.app import views
    from rdexpert.app.tab_ablations import walkthrough

    example = str(ROOT / "assets" / "defect_train_00066.png")
    gated = next(k for k in app_registry.choices() if app_registry.get(k).variant in ("full", "rd_gii"))
    message, *panels = walkthrough(app_registry, gated, None, example)
    texts, (gates, gates_text) = panels[4:8], panels[8:10]
    assert "defect_train_00066.png" in message
    assert len(gates) == 2 and [caption.split(",")[0] for _, caption in gates] == ["s at 1/16 (stride 16)",
                                                                                   "s at 1/8 (stride 8)"]
    assert all(picture.dtype == np.uint8 and picture.shape[2] == 3 for picture, _ in gates)
    assert "per-pixel cosine similarity between the student's decoded feature and the teacher's" in gates_text
    assert all("What to look at" in text for text in texts)
    assert "Difference from the default map" not in texts[0]
    assert all("Difference from the default map" in text and "mean **" in text for text in texts[1:])
    assert views.LOOK_AT[("teacher", "closed")] in texts[3]

    plain_rd = next(k for k in app_registry.choices() if app_registry.get(k).variant == "rd")
    _, *panels = walkthrough(app_registry, plain_rd, None, example)
    assert panels[8] is None and "no GII gate" in panels[9] and "no skips" in panels[9]


def _without_data(monkeypatch, registry: Registry, tmp_path) -> str:
    """The shipped checkpoint, with its dataset root pointed at a folder that does not exist (a Space, a clone)."""
    if not (DEMO / "test" / "metrics.json").is_file():
        pytest.skip("the shipped demo checkpoint with its test report is not here")
    key = next(k for k in registry.choices() if registry.get(k).source == "shipped")
    monkeypatch.setitem(registry.get(key).config["dataset"], "root", str(tmp_path / "no_such_data"))
    return key


def test_evaluate_falls_back_to_the_stored_test_report(app_registry, monkeypatch, tmp_path):
    """No data folder: the checkpoint's test/ report (metrics, overlay scores) is shown, labelled; a checkpoint
    without a report still says it cannot evaluate."""
    from rdexpert.app.evaluation import STORED_LABEL
    from rdexpert.app.tab_evaluate import evaluate_checkpoint

    key = _without_data(monkeypatch, app_registry, tmp_path)
    summary, roc, hist, rows, paths = evaluate_checkpoint(app_registry, collections.OrderedDict(), [], key)
    assert STORED_LABEL in summary and "all 107 test images" in summary and "I-AUROC" in summary
    assert paths == []  # no file to open in Inspect
    # every image's stored score (test/scores.csv): all 107 rows, and the image ROC drawn from them
    assert len(rows) == 107 and rows[0][2] == "defective" and rows[-1][2] == "normal"
    assert roc is not None and "image" in roc.data[0].name
    assert [row[3] for row in rows] == sorted((row[3] for row in rows), reverse=True)
    assert {trace.name.split(" ")[0] for trace in hist.data} == {"normal", "defective"}
    plain_rd = next(k for k in app_registry.choices() if app_registry.get(k).variant == "rd")
    monkeypatch.setitem(app_registry.get(plain_rd).config["dataset"], "root", str(tmp_path / "no_such_data"))
    assert "Cannot evaluate" in evaluate_checkpoint(app_registry, collections.OrderedDict(), [], plain_rd)[0]


def test_a_report_without_every_score_falls_back_to_the_overlay_names(tmp_path):
    """Reports written before scores.csv existed still give the scores their overlay file names carry."""
    from rdexpert.evaluation.evaluate import read_report_scores

    (tmp_path / "overlays").mkdir()
    for name in ("defect_test_00026_score2.619.png", "good_test_00003_score1.402.png", "notes.png"):
        (tmp_path / "overlays" / name).write_bytes(b"")
    assert read_report_scores(tmp_path) == [("test_00026", 1, 2.619), ("test_00003", 0, 1.402)]
    (tmp_path / "scores.csv").write_text("image,label,score\ngood/a,b.png,0,1.5\n")  # a comma in a name stays
    assert read_report_scores(tmp_path) == [("good/a,b.png", 0, 1.5)]


def test_architecture_diagram_is_regenerated(tmp_path):
    """``python -m rdexpert.app.diagram`` draws the Ablations tab's picture; the shipped one is not an example."""
    from rdexpert.app.diagram import DIAGRAM, draw
    from rdexpert.app.server import example_images

    path = draw(tmp_path / "ets.png")
    with Image.open(path) as picture:
        width, height = picture.size
        assert picture.format == "PNG" and 800 <= width <= 2000 and 350 <= height <= 1200, picture.size
    assert 20_000 < path.stat().st_size < 500_000
    assert DIAGRAM.is_file() and DIAGRAM.parent == ROOT / "assets"
    assert str(DIAGRAM) not in [p for p, _ in example_images(ROOT / "assets")]


def test_finetune_and_evaluate_handlers_refuse_without_a_browser(tmp_path):
    import gradio as gr

    from rdexpert.app.tab_evaluate import evaluate_checkpoint, open_row
    from rdexpert.app.tab_finetune import cancel, finetune
    from rdexpert.app.ui import AppConfig

    registry = Registry()
    cfg = AppConfig(registry=registry, workdir=tmp_path)
    status, *_ = next(finetune(cfg, None, None, None, None, "full", 64, 3, "x", False, None))
    assert "Upload normal images" in status
    assert "No fine-tune is running" in cancel(cfg.sessions, None)
    assert evaluate_checkpoint(registry, {}, [], None)[0] == "Choose a checkpoint first."
    assert "Cannot evaluate" in evaluate_checkpoint(registry, {}, [], "no such checkpoint")[0]
    tabs, *rest = open_row(registry, "k", [], 0.5, _select([3, 1]))
    assert all(r == tabs == gr.skip() for r in rest)  # nothing to open: every output left as it is


def test_handlers_bound_for_gradio_keep_name_parameters_and_streaming():
    import inspect as pyinspect

    import gradio as gr

    from rdexpert.app.common import bind
    from rdexpert.app.sessions import Sessions
    from rdexpert.app.tab_evaluate import evaluate_selected
    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.tab_inspect import inspect_example

    streaming = bind(finetune, object())
    assert streaming.__name__ == "finetune" and pyinspect.isgeneratorfunction(streaming)
    assert list(pyinspect.signature(streaming).parameters)[0] == "normal"
    assert streaming.__annotations__["request"] == gr.Request | None
    plain = bind(inspect_example, Sessions(Registry(), "unused"), ["a.png"])
    assert list(pyinspect.signature(plain).parameters) == ["key", "threshold", "evt", "request"]
    assert plain.__annotations__["evt"] is gr.SelectData and not pyinspect.isgeneratorfunction(plain)
    # Evaluate shows the network's tqdm bar in the page: gradio finds the gr.Progress default
    progress = pyinspect.signature(bind(evaluate_selected, None, {}, [])).parameters["progress"].default
    assert isinstance(progress, gr.Progress) and progress.track_tqdm


def test_variant_texts_and_notes_follow_the_variant_flags():
    from rdexpert.app import views
    from rdexpert.model import GATES, REFERENCES, VARIANTS

    assert set(views.SWITCH_TEXT) == {(r, g) for r in REFERENCES for g in GATES}
    for name, flags in VARIANTS.items():
        text = views.variant_text(name)
        assert ("trained teacher" in text) == flags.train_teacher and views.SKIP_TEXT[flags.skip] in text
        assert bool(views.switch_note(name, "expert", "gated")) == (not flags.train_teacher)
        assert bool(views.switch_note(name, "teacher", "open")) == (flags.skip != "gated")
        assert views.switch_note(name, "teacher", "gated") == ""
    assert views.variant_text("unknown") == "" and views.switch_note(None, "expert", "open") == ""


def test_metrics_markdown_escapes_the_at_sign_and_says_when_there_is_nothing():
    from rdexpert.app.views import NO_METRICS, metrics_markdown

    table = metrics_markdown({"m": {"aupro": 0.5, "image_auroc": float("nan")}})
    assert table.splitlines() == ["| model | I-AUROC | AUPRO&#64;0.3 |", "|---|---|---|", "| m | – | 50.0 |"]
    assert metrics_markdown({"m": {}}) == NO_METRICS


# ---------------------------------------------------------------------------------------------
# hardening: sessions own their fine-tunes, limits, errors as messages, the workdir's budget
# ---------------------------------------------------------------------------------------------
def _request(session: str):
    """The request gradio hands a handler, for the browser session ``session``."""
    import gradio as gr

    return gr.Request(session_hash=session)


def _jpeg_bytes(size: int = 256) -> bytes:
    """A real JPEG: an MPDD metal_plate training image, re-encoded."""
    source = sorted((MPDD / "metal_plate" / "train" / "good").glob("*.png"))[0]
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").resize((size, size)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _needs_mpdd():
    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"shared MPDD data not found at {MPDD}")


def _texts(outputs) -> str:
    """Every string a handler returned (what the page would show), as one text."""
    return " ".join(str(o) for o in outputs if isinstance(o, str))


@pytest.fixture(scope="module")
def alice(served_app, tmp_path_factory, one_thread):
    """A tiny fine-tune made in the running app by the browser session "alice" (through the handler)."""
    from rdexpert.app.tab_finetune import finetune

    _needs_mpdd()
    demo, url = served_app
    cfg = demo.rdx_config
    upload = _mpdd_zip(tmp_path_factory.mktemp("alice") / "alice.zip", normal=4, defects=1, size=64)
    outputs = list(finetune(cfg, [str(upload)], None, None, None, "rd", 64, 2, "alice-parts", False, _request("alice")))
    session = cfg.sessions.get(_request("alice"))
    assert session.job is not None and session.job.status == "done", outputs[-1][0]
    return {"cfg": cfg, "url": url, "last": outputs[-1], "job": session.job, "session": session}


def test_fine_tunes_belong_to_the_session_that_made_them(alice):
    """D1: a second visitor neither lists nor loads the first one's fine-tune; no server path is shown."""
    import gradio as gr

    from rdexpert.app.header import describe_selected
    from rdexpert.app.sessions import folder_name
    from rdexpert.app.tab_evaluate import evaluate_selected
    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.tab_inspect import inspect_files
    from rdexpert.app.ui import refresh

    cfg, job, last = alice["cfg"], alice["job"], alice["last"]
    sessions, workdir = cfg.sessions, cfg.workdir.resolve()
    status, _, result, download = last
    assert "Done in" in status and "alice-parts" in result
    key = next(k for k in sessions.registry_for(_request("alice")).choices() if "alice-parts" in k)
    # files in alice's own folder; the page shows names, never server paths
    assert job.out.resolve().is_relative_to(workdir / "sessions" / folder_name("alice"))
    shown = _texts([status, result, describe_selected(sessions, key, _request("alice"))])
    assert str(workdir) not in shown and str(job.out) not in shown and "fine-tuned" in shown
    # the download is a copy in gradio's upload cache, not a workdir path
    assert download and not Path(download).resolve().is_relative_to(workdir)
    # alice lists and uses it
    assert key in refresh(sessions, _request("alice"))[0].constructor_args["choices"]
    example = str(ROOT / "assets" / "good_test_00003.png")
    state, *_, message = inspect_files(sessions, key, [example], 0.5, _request("alice"))
    assert state is not None and state.key == key, message

    # bob: a fresh session
    bob = _request("bob")
    checkpoint, base, _ = refresh(sessions, bob)
    assert not any("alice" in str(c) for c in checkpoint.constructor_args["choices"])
    assert not any("alice" in str(c) for c in base.constructor_args["choices"])
    assert not any("alice" in k for k in cfg.registry.choices())  # nothing in the shared list either
    state, *_, message = inspect_files(sessions, key, [example], 0.5, bob)
    assert state is None and "unknown checkpoint" in message
    assert "Cannot evaluate" in evaluate_selected(sessions, collections.OrderedDict(), [ROOT], key, bob)[0]
    assert "unknown checkpoint" in describe_selected(sessions, key, bob)
    upload = [str(ROOT / "assets" / "good_test_00003.png"), str(ROOT / "assets" / "good_test_00012.png")]
    status, *_ = next(finetune(cfg, upload, None, None, key, "rd", 64, 2, "bob", False, bob))
    assert "unknown checkpoint" in status  # not even as "Start from"
    assert isinstance(refresh(sessions, bob)[0], gr.Dropdown)


def test_warm_start_fine_tune_begins_from_the_chosen_checkpoint(alice):
    """"Warm start" with a checkpoint in "Start from": the run begins from its trained weights, and says so."""
    import json

    from rdexpert.app.tab_finetune import finetune

    cfg, request = alice["cfg"], _request("alice")
    base = next(k for k in cfg.sessions.registry_for(request).choices() if "alice-parts" in k)
    upload = [str(ROOT / "assets" / "good_test_00003.png"), str(ROOT / "assets" / "good_test_00012.png")]
    outputs = list(finetune(cfg, upload, None, None, base, "rd", 64, 1, "alice-warm", True, request))
    job = cfg.sessions.get(request).job
    assert job.status == "done", outputs[-1][0]
    assert "warm start" in " ".join(str(o) for o in outputs[0] if isinstance(o, str))
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
    assert status_of(alice["last"][3]) == 200  # the zip handed to alice's download component
    with urllib.request.urlopen(f"{url}config", timeout=30) as r:  # what a fresh page is built from
        page = r.read().decode()
    assert "alice-parts" not in page and str(cfg.workdir.resolve()) not in page


def test_internal_events_are_not_api_endpoints(served_app):
    """Only Inspect (uploaded images) and Evaluate are API endpoints: no fine-tune, cancel, redraws, loads."""
    import urllib.request

    demo, url = served_app
    named = set(demo.get_api_info()["named_endpoints"])
    assert named == {"/inspect_files", "/evaluate_checkpoint"}
    with urllib.request.urlopen(f"{url}gradio_api/info", timeout=30) as r:
        served = json.loads(r.read())
    assert set(served["named_endpoints"]) == named and not served["unnamed_endpoints"]


def test_inspect_refuses_a_huge_image_from_its_header(tmp_path, monkeypatch):
    """D5: a 5000x4000 PNG is refused from its header, before a pixel is decoded; big JPEGs decode downscaled."""
    from PIL import ImageFile

    from rdexpert.app.tab_inspect import DECODE_PIXELS, MAX_INSPECT_PIXELS, inspect, read_image

    _needs_mpdd()
    source = Image.open(sorted((MPDD / "metal_plate" / "train" / "good").glob("*.png"))[0]).convert("RGB")
    huge = tmp_path / "huge_scan.png"
    source.resize((5000, 4000), Image.NEAREST).save(huge, compress_level=1)
    assert 5000 * 4000 > MAX_INSPECT_PIXELS
    big_jpeg = tmp_path / "big.jpg"
    source.resize((4000, 3000), Image.NEAREST).save(big_jpeg, quality=80)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the pixels were decoded")

    def no_network(*args, **kwargs):
        raise AssertionError("the network ran")

    registry = Registry()
    monkeypatch.setattr(registry, "predictor", no_network)
    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decoding)
        began = time.perf_counter()
        state, *_, message = inspect(registry, "any", [str(huge)], 0.5)
        seconds = time.perf_counter() - began
    assert state is None and "huge_scan.png" in message and "5000x4000" in message and "limit" in message
    assert seconds < 2.0
    image = read_image(big_jpeg)  # accepted (12 MP), decoded in JPEG draft mode at 1/4 scale
    assert image.shape == (750, 1000, 3) and image.shape[0] * image.shape[1] <= DECODE_PIXELS


def test_truncated_jpeg_is_a_message_in_inspect_and_refused_at_upload(app_registry, tmp_path):
    """D6: the first half of a real JPEG: Inspect says so (no bare error); the fine-tune upload refuses it by name."""
    from rdexpert.app.header import first_choice
    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.tab_inspect import inspect
    from rdexpert.app.ui import AppConfig

    data = _jpeg_bytes()
    truncated = tmp_path / "half_part.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    state, *_, message = inspect(app_registry, first_choice(app_registry), [str(truncated)], 0.5)
    assert state is None and "half_part.jpg" in message and "truncated" in message
    assert str(tmp_path) not in message

    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, path in enumerate(good):
        path.write_bytes(_png_bytes(i))
    with pytest.raises(UploadError, match=r"half_part\.jpg.*truncated"):
        prepare_dataset(tmp_path / "d1", [*good, truncated])
    archive = _zip(tmp_path / "parts.zip", {"good/a.png": _png_bytes(0), "good/b.png": _png_bytes(1),
                                            "good/half_part.jpg": data[: len(data) // 2]})
    with pytest.raises(UploadError, match=r"half_part\.jpg.*truncated"):
        prepare_dataset(tmp_path / "d2", [archive])
    cfg = AppConfig(registry=Registry(), workdir=tmp_path / "work")
    status, *_ = next(finetune(cfg, [*map(str, good), str(truncated)], None, None, None, "rd", 64, 2, "t", False, None))
    assert "Upload refused" in status and "half_part.jpg" in status and str(tmp_path) not in status


def _corrupt(archive: Path, offset_of, patch: bytes) -> Path:
    data = bytearray(archive.read_bytes())
    at = offset_of(bytes(data))
    data[at : at + len(patch)] = patch
    archive.write_bytes(bytes(data))
    return archive


def test_a_zip_with_a_corrupt_or_lying_header_is_refused_with_a_message(tmp_path):
    """D6: a broken zip is an upload message (BadZipFile and the like never reach the visitor)."""
    import struct

    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.ui import AppConfig

    entries = {"good/a.png": _png_bytes(0), "good/b.png": _png_bytes(1), "good/c.png": _png_bytes(2)}
    # the local header of the second entry is overwritten
    bad_magic = _corrupt(_zip(tmp_path / "magic.zip", entries), lambda d: d.index(b"PK\x03\x04", 4), b"XX\x00\x00")
    # the central directory says the first entry is 10 bytes (it is not): the CRC check fails on reading
    lying = _corrupt(
        _zip(tmp_path / "lying.zip", entries),
        lambda d: d.index(b"PK\x01\x02") + 24,  # uncompressed size of the first central directory record
        struct.pack("<I", 10),
    )
    for archive in (bad_magic, lying):
        with pytest.raises(UploadError, match="damaged|not a valid zip"):
            prepare_dataset(tmp_path / archive.stem, [archive])
        assert not (tmp_path / archive.stem).exists()
        cfg = AppConfig(registry=Registry(), workdir=tmp_path / "work")
        status, *_ = next(finetune(cfg, [str(archive)], None, None, None, "rd", 64, 2, "t", False, None))
        assert "Upload refused" in status and str(tmp_path) not in status, status


def test_unexpected_errors_become_the_apps_message_and_a_logged_traceback(caplog):
    """D6: an exception a handler did not expect reaches the page as the app's message, without server paths."""
    import gradio as gr

    from rdexpert.app.common import bind

    def broken(secret: Path, x):
        raise OSError(f"cannot open {secret}/weights.bin")

    def broken_stream(secret: Path, x):
        yield "first"
        raise zipfile.BadZipFile(f"{secret}/upload.zip")

    for handler in (bind(broken, Path("/srv/private")), bind(broken_stream, Path("/srv/private"))):
        with caplog.at_level("ERROR", logger="rdexpert.app"), pytest.raises(gr.Error) as raised:
            list(handler(1)) if handler.__name__ == "broken_stream" else handler(1)
        assert "went wrong" in raised.value.message and "/srv/private" not in raised.value.message
        assert "Traceback" in caplog.text or caplog.records[-1].exc_info
        caplog.clear()


def test_a_failed_job_and_a_full_disk_are_messages_without_paths(tmp_path, monkeypatch):
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
    status, *_ = next(tab_finetune.finetune(cfg, ["x.png"], None, None, None, "rd", 64, 2, "t", False, None))
    assert "could not store your upload" in status and "No space left" in status


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


# ---------------------------------------------------------------------------------------------
# the page, in Chromium
# ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(app_checkpoints, tmp_path_factory):
    """The app launched on a free localhost port: (demo, url)."""
    from rdexpert.app.server import build_app, launch, parse_args

    args = parse_args(
        [
            "--checkpoints",
            str(app_checkpoints["folder"]),
            "--port",
            str(_free_port()),
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


@pytest.fixture(scope="module")
def app_url(served_app):
    return served_app[1]


@pytest.fixture(scope="module")
def page(app_url):
    if not CHROMIUM.exists():
        pytest.skip("Chromium not found at /usr/bin/chromium (apt-get install -y chromium); browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(60_000)
        tab.goto(app_url)
        tab.wait_for_selector("#rdx-examples button.thumbnail-item")
        yield tab
        browser.close()


def _shot(page, name: str) -> None:
    page.wait_for_timeout(400)  # let plots and images settle
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


@contextlib.contextmanager
def _visitor(page, app_url: str, width: int = 1400, height: int = 1000):
    """The page loaded by another visitor (a new browser context, nothing shared), with this viewport."""
    context = page.context.browser.new_context(viewport={"width": width, "height": height})
    try:
        other = context.new_page()
        other.set_default_timeout(60_000)
        other.goto(app_url)
        other.wait_for_selector("#rdx-examples button.thumbnail-item")
        yield other
    finally:
        context.close()


def _wait_text(page, selector: str, text: str, timeout: float = 60_000) -> None:
    page.locator(selector).filter(has_text=text).first.wait_for(timeout=timeout)


def test_page_inspect_example_and_threshold(page):
    banner = page.locator("#rdx-banner").inner_text()
    assert "broken" in banner and "not available" in banner  # a broken checkpoint is a message, not a crash
    started = time.perf_counter()
    page.locator("#rdx-examples button.thumbnail-item").nth(3).click()  # a defective example
    _wait_text(page, "#rdx-verdict", "calibrated score")
    print(f"\nInspect round trip in the browser: {time.perf_counter() - started:.2f} s")
    verdict = page.locator("#rdx-verdict").inner_text()
    assert "device cpu" in verdict or "device cuda" in verdict
    assert "threshold 0.50" in verdict
    # (b) a defect example: ANOMALOUS, how many times the threshold, and the example's ground truth beside it
    assert "ANOMALOUS" in verdict and re.search(r"\d+\.\d × threshold", verdict), verdict
    assert "ground truth: defective · model: ANOMALOUS (agrees)" in verdict
    for k in range(3):
        assert page.locator(f"#rdx-scale-{k} img").count() == 1
    assert page.locator("#rdx-fused img").count() == 1
    _shot(page, "inspect_defect_example")

    fused_before = page.locator("#rdx-fused img").get_attribute("src")
    slider = page.locator("#rdx-threshold input[type=number]")
    slider.fill("0.05")
    slider.press("Enter")
    _wait_text(page, "#rdx-verdict", "threshold 0.05")
    assert "ANOMALOUS" in page.locator("#rdx-verdict").inner_text()  # everything is above a 0.05 threshold
    page.wait_for_function(
        "src => document.querySelector('#rdx-fused img') && document.querySelector('#rdx-fused img').src !== src",
        arg=fused_before,
    )
    _shot(page, "inspect_threshold_0.05")
    slider.fill("0.5")
    slider.press("Enter")
    _wait_text(page, "#rdx-verdict", "threshold 0.50")


def _inspect_upload(page, paths: list[Path], name: str) -> str:
    """Upload ``paths`` in Inspect, run it, wait until ``name`` is shown; the verdict's text (upload cleared)."""
    _tab(page, "Inspect")
    page.locator("#rdx-files input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_timeout(500)
    page.locator("#rdx-run").click()
    _wait_text(page, "#rdx-inspect-info", name)
    return page.locator("#rdx-verdict").inner_text()


def _clear_upload(page) -> None:
    page.locator("#rdx-files button[aria-label=Clear]").click()


def test_page_inspect_normal_example(page):
    """(a) The normal example: verdict NORMAL, with the example's ground truth (its caption) beside it."""
    _tab(page, "Inspect")
    caption = page.locator("#rdx-examples .caption-label").nth(1).inner_text()
    assert caption.startswith("normal:")
    page.locator("#rdx-examples button.thumbnail-item").nth(1).click()
    _wait_text(page, "#rdx-verdict", "ground truth: normal")
    verdict = page.locator("#rdx-verdict").inner_text()
    assert verdict.startswith("NORMAL") and "ANOMALOUS" not in verdict
    assert "ground truth: normal · model: NORMAL (agrees)" in verdict
    assert caption.split(": ")[1] in page.locator("#rdx-inspect-info").inner_text()  # the example's file
    _shot(page, "inspect_normal_example")


def test_page_a_texture_is_flagged_as_not_the_trained_product(page, app_checkpoints, dtd_root):
    """(c) A DTD texture is not a metal plate: the out-of-distribution warning stands above the verdict."""
    if not app_checkpoints["demo"]:
        pytest.skip("the shipped demo checkpoint (with its out-of-distribution check) is not here")
    texture = dtd_root / "banded" / "banded_0002.jpg"
    verdict = _inspect_upload(page, [texture], texture.name)
    assert "Not what this model was trained on" in verdict and "metal_plate" in verdict
    assert "the verdict below is not meaningful" in verdict and "ground truth" not in verdict
    warning, shown = page.locator("#rdx-verdict .rdx-ood"), page.locator("#rdx-verdict .rdx-verdict")
    assert warning.is_visible() and warning.bounding_box()["y"] < shown.bounding_box()["y"]
    _shot(page, "inspect_out_of_distribution_texture")
    _clear_upload(page)


def test_page_a_non_square_upload_is_drawn_at_its_own_aspect_ratio(page, tmp_path):
    """(g) A 300 x 180 crop of a plate: the input, the map and the scale maps are shown 5:3, not square."""
    wide = tmp_path / "wide_plate.png"
    plate = Image.open(MPDD / "metal_plate" / "test" / "defect" / "test_00026.png").convert("RGB")
    plate.crop((100, 150, 400, 330)).save(wide)  # 300 wide, 180 high
    _inspect_upload(page, [wide], wide.name)
    # what is seen: the picture's own shape, unless the page stretches ("fill") or cuts ("cover") it to its box
    seen = """e => e.decode().then(() => ['fill', 'cover'].includes(getComputedStyle(e).objectFit)
                  ? e.clientWidth / e.clientHeight : e.naturalWidth / e.naturalHeight)"""
    for selector in ("#rdx-input img", "#rdx-fused img", "#rdx-scale-0 img"):
        ratio = page.locator(selector).evaluate(seen)
        assert ratio == pytest.approx(300 / 180, abs=0.02), (selector, ratio)
    page.locator("#rdx-fused").scroll_into_view_if_needed()
    _shot(page, "inspect_non_square_upload")
    _clear_upload(page)


def test_page_upload_several_images_to_inspect(page, tmp_path):
    _tab(page, "Inspect")
    paths = []
    for name in ("good_test_00003.png", "defect_train_00045.png"):
        paths.append(ROOT / "assets" / name)
    page.locator("#rdx-files input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_timeout(500)
    page.locator("#rdx-run").click()
    page.locator("#rdx-results button.thumbnail-item").nth(1).wait_for()
    assert "2 images in" in page.locator("#rdx-verdict").inner_text()
    page.locator("#rdx-results button.thumbnail-item").nth(1).click()
    _wait_text(page, "#rdx-inspect-info", "defect_train_00045")
    _shot(page, "inspect_two_images")

    fake = tmp_path / "scan.png"
    fake.write_text("not an image")
    page.locator("#rdx-files button[aria-label=Clear]").click()
    page.locator("#rdx-files input[type=file]").set_input_files(str(fake))
    page.wait_for_timeout(500)
    page.locator("#rdx-run").click()
    _wait_text(page, "#rdx-inspect-message", "not an image")
    page.locator("#rdx-files button[aria-label=Clear]").click()

    if (MPDD / "metal_plate").is_dir():  # a truncated JPEG: the app's message, not gradio's bare "Error"
        data = _jpeg_bytes()
        truncated = tmp_path / "cut_off.jpg"
        truncated.write_bytes(data[: len(data) // 2])
        page.locator("#rdx-files input[type=file]").set_input_files(str(truncated))
        page.wait_for_timeout(500)
        page.locator("#rdx-run").click()
        _wait_text(page, "#rdx-inspect-message", "truncated")
        assert "cut_off.jpg" in page.locator("#rdx-inspect-message").inner_text()
        page.locator("#rdx-files button[aria-label=Clear]").click()


def test_page_ablation_walkthrough_and_switch(page):
    _tab(page, "Ablations")
    page.locator("#rdx-abl-run").click()  # the last Inspect request was refused: nothing to walk through yet
    _wait_text(page, "#rdx-abl-message", "Pick an image")
    page.locator("#rdx-abl-examples button.thumbnail-item").nth(3).click()
    _wait_text(page, "#rdx-abl-text-0", "teacher · gated")
    assert "defect_train_00066" in page.locator("#rdx-abl-message").inner_text()
    for k, words in enumerate(["teacher · gated", "expert · gated", "teacher · open", "teacher · closed"]):
        assert words in page.locator(f"#rdx-abl-text-{k}").inner_text()
    if DEMO.is_dir() and "teacher/closed" in json.loads((DEMO / "config.json").read_text()).get("metrics", {}):
        assert "Stored test metrics of this setting" in page.locator("#rdx-abl-text-3").inner_text()
    # the tiny rd variant (and the full one) of metal_plate are compared side by side
    _wait_text(page, "#rdx-abl-variants-text", "Stored test metrics")
    assert page.locator("#rdx-abl-variants button.thumbnail-item").count() >= 2
    assert page.locator("#rdx-abl-gates button.thumbnail-item").count() == 2  # s at the 2 gated scales
    assert "per-pixel cosine similarity" in page.locator("#rdx-abl-gates-text").inner_text()
    for k in (1, 2, 3):
        assert "Difference from the default map" in page.locator(f"#rdx-abl-text-{k}").inner_text()
        assert "What to look at" in page.locator(f"#rdx-abl-text-{k}").inner_text()
    assert page.locator("#rdx-abl-diagram img").count() == 1
    caption = page.locator("#rdx-abl-examples .caption-label").nth(2)  # "defective: train_00045", cut short
    assert caption.evaluate("e => e.scrollWidth > e.clientWidth")
    page.locator("#rdx-abl-examples button.thumbnail-item").nth(2).hover()
    assert caption.evaluate("e => e.scrollWidth <= e.clientWidth")  # pointed at: the whole caption
    # (d) the trained variants side by side and the GII gate maps, on screen
    variants = page.locator("#rdx-abl-variants button.thumbnail-item img")
    assert variants.count() >= 2 and all(variants.nth(k).is_visible() for k in range(variants.count()))
    page.locator("#rdx-abl-gates").scroll_into_view_if_needed()
    gates = page.locator("#rdx-abl-gates button.thumbnail-item img")
    assert all(gates.nth(k).is_visible() and gates.nth(k).evaluate("e => e.naturalWidth > 0") for k in range(2))
    _shot(page, "ablations_variants_and_gate_maps")
    page.locator("#rdx-abl-gate label").filter(has_text="open").click()
    _wait_text(page, "#rdx-abl-custom-text", "teacher · open")
    page.locator("#rdx-abl-reference label").filter(has_text="expert").click()
    _wait_text(page, "#rdx-abl-custom-text", "expert · open")
    _shot(page, "ablations")


def test_page_bad_uploads_are_refused_with_a_message(page, tmp_path):
    _tab(page, "Fine-tune")
    evil = _zip(
        tmp_path / "evil.zip",
        {"good/a.png": _png_bytes(0), "good/b.png": _png_bytes(1), "../../outside.png": _png_bytes(2)},
    )
    page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(evil))
    page.wait_for_timeout(500)
    page.locator("#rdx-ft-start").click()
    _wait_text(page, "#rdx-ft-status", "outside the archive")
    assert "Upload refused" in page.locator("#rdx-ft-status").inner_text()
    _shot(page, "finetune_refused_zip")

    fake = tmp_path / "photo.png"
    fake.write_text("this is text, not a PNG")
    page.locator("#rdx-ft-normal button[aria-label=Clear]").click()
    page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(fake))
    page.wait_for_timeout(500)
    page.locator("#rdx-ft-start").click()
    _wait_text(page, "#rdx-ft-status", "could not be read as an image")
    page.locator("#rdx-ft-normal button[aria-label=Clear]").click()


def test_page_evaluate_without_the_data_folder(page, served_app, monkeypatch, tmp_path):
    """A Space or a fresh clone: no data folder, so Evaluate shows the checkpoint's stored test results."""
    key = _without_data(monkeypatch, served_app[0].rdx_config.registry, tmp_path)
    assert key in page.locator("#rdx-checkpoint input").input_value()
    _tab(page, "Evaluate")
    page.locator("#rdx-ev-run").click()
    _wait_text(page, "#rdx-ev-summary", "stored results of the test split (no data folder found)")
    assert "I-AUROC" in page.locator("#rdx-ev-summary").inner_text()
    page.locator("#rdx-ev-hist .js-plotly-plot").wait_for()
    stored = len(list((DEMO / "test" / "overlays").glob("*.png")))
    assert page.locator('#rdx-ev-table [data-testid="cell-0-1"]').count() == 1
    assert page.locator(f'#rdx-ev-table [data-testid="cell-{stored - 1}-1"]').count() == 1
    _shot(page, "evaluate_stored_results")


def test_page_finetune_tiny_and_evaluate(page, tmp_path):
    _tab(page, "Fine-tune")
    upload = _mpdd_zip(tmp_path / "my_parts.zip", normal=5, defects=2, size=96)
    page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(upload))
    iterations = page.locator("#rdx-ft-iterations input[type=number]")
    iterations.fill("3")
    iterations.press("Enter")
    page.locator("#rdx-ft-size input").click()
    page.get_by_role("option", name="64", exact=True).click()
    page.locator("#rdx-ft-variant input").click()
    page.get_by_role("option", name="rd_gii", exact=True).click()
    page.locator("#rdx-ft-name input, #rdx-ft-name textarea").first.fill("tiny-test")
    page.wait_for_timeout(500)
    page.locator("#rdx-ft-start").click()
    _wait_text(page, "#rdx-ft-status", "Done in", timeout=180_000)
    assert "iteration 3 / 3" in page.locator("#rdx-ft-status").inner_text()
    _wait_text(page, "#rdx-ft-metrics", "selectable")
    assert "I-AUROC" in page.locator("#rdx-ft-metrics").inner_text()  # defects were uploaded: metrics exist
    assert page.locator("#rdx-ft-download a").count() >= 1
    assert page.locator("#rdx-ft-plot .js-plotly-plot").count() == 1
    _shot(page, "finetune_done")

    # the new model is selectable, and evaluable on its held-out + defective uploads
    page.locator("#rdx-checkpoint input").click()
    page.get_by_role("option").filter(has_text="tiny-test").first.click()
    _wait_text(page, "#rdx-checkpoint-info", "fine-tuned")
    assert "/sessions/" not in page.locator("#rdx-checkpoint-info").inner_text()  # a name, not a server path
    _tab(page, "Evaluate")
    page.locator("#rdx-ev-run").click()
    _wait_text(page, "#rdx-ev-summary", "images in")
    assert page.locator("#rdx-ev-roc .js-plotly-plot").count() == 1
    assert page.locator("#rdx-ev-hist .js-plotly-plot").count() == 1
    _shot(page, "evaluate")
    first_image = page.locator('#rdx-ev-table [data-testid="cell-0-1"]')  # row 1, column "image"
    name = first_image.inner_text().strip()
    first_image.click()
    _wait_text(page, "#rdx-inspect-info", name)
    assert "tiny-test" in page.locator("#rdx-inspect-info").inner_text()
    assert page.get_by_role("tab", name="Inspect").get_attribute("aria-selected") == "true"
    _shot(page, "evaluate_row_opened_in_inspect")


def test_page_a_second_visitor_does_not_see_the_first_ones_fine_tune(page, app_url):
    """D1 in two browser contexts (two visitors): the fine-tune above is listed for its page only."""
    with _visitor(page, app_url) as other:
        _wait_text(other, "#rdx-checkpoint-info", "source:")  # the page-load events ran
        other.wait_for_timeout(500)
        other.locator("#rdx-checkpoint input").click()
        other.get_by_role("option").first.wait_for()
        options = other.get_by_role("option").all_inner_texts()
        assert options and not any("tiny-test" in o for o in options), options
        _tab(other, "Fine-tune")
        other.locator("#rdx-ft-base input").click()
        assert not any("tiny-test" in o for o in other.get_by_role("option").all_inner_texts())
    page.locator("#rdx-checkpoint input").click()  # the first visitor still has it
    page.get_by_role("option").first.wait_for()
    assert any("tiny-test" in o for o in page.get_by_role("option").all_inner_texts())
    page.keyboard.press("Escape")


def test_page_on_a_narrow_screen_shows_the_verdict_before_the_controls(page, app_url, tmp_path):
    """At 400 px (a phone) Inspect is one column: upload, verdict and map first, then the threshold and examples;
    picture labels are not covered by their buttons; a Fine-tune upload list is a count."""
    with _visitor(page, app_url, width=400, height=900) as phone:
        phone.locator("#rdx-examples button.thumbnail-item").nth(3).click()
        _wait_text(phone, "#rdx-verdict", "calibrated score")

        def page_tops(selectors: list[str]) -> list[float]:
            """Tops from the top of the page, read in one script: the page may still be scrolling to the
            result, and view-relative positions read one after another would mix scroll positions."""
            return phone.evaluate("(selectors) => selectors.map((s) => document.querySelector(s)"
                                  ".getBoundingClientRect().top + window.scrollY)", selectors)

        order = ["#rdx-files", "#rdx-verdict", "#rdx-fused", "#rdx-threshold", "#rdx-examples"]
        tops = page_tops(order)
        assert tops == sorted(tops), dict(zip(order, tops))
        on_page = tops[1]
        print(f"\nthe verdict's top at 400 px wide: {on_page:.0f} px from the top of the page")
        assert on_page < 900, on_page  # (f) on a phone's first screen, even below the test's broken-checkpoint banner
        assert phone.locator("#rdx-fused").bounding_box()["width"] <= 400
        header = page_tops(["#rdx-checkpoint", "#rdx-checkpoint-info"])
        assert header[0] < header[1]  # the header is stacked too
        for k in range(3):  # each picture's label clears its buttons (side by side they covered it)
            label = phone.locator(f'#rdx-scale-{k} label[data-testid="block-label"]').bounding_box()
            buttons = phone.locator(f"#rdx-scale-{k} .icon-button-wrapper").first.bounding_box()
            assert label["x"] + label["width"] <= buttons["x"] + 1, (k, label, buttons)
        phone.locator("#rdx-verdict").scroll_into_view_if_needed()
        _shot(phone, "inspect_narrow_400px")

        parts = []  # a long upload list collapses to its count
        for i in range(6):
            parts.append(tmp_path / f"part_{i}.png")
            parts[-1].write_bytes(_png_bytes(i))
        _tab(phone, "Fine-tune")
        phone.locator("#rdx-ft-normal input[type=file]").set_input_files([str(p) for p in parts])
        _wait_text(phone, "#rdx-ft-normal-count", "6 files")
        assert not phone.locator("#rdx-ft-normal .file-preview-holder").is_visible()
        _shot(phone, "finetune_narrow_400px")


def test_shipped_variants_are_compared_like_with_like():
    """The shipped 128-px ablation checkpoints (one budget) are what the Ablations tab compares, not the
    256-px demo `full` beside them; the text names the shared budget."""
    from rdexpert.app.tab_ablations import variant_comparison

    shipped = sorted(p for p in (ROOT / "checkpoints").glob("metal_plate_*_128px") if (p / "config.json").is_file())
    if len(shipped) < 4:
        pytest.skip("the shipped ablation checkpoints are not here")
    registry = Registry(device="cpu")
    registry.scan(ROOT / "checkpoints", source="shipped")
    found = registry.variants("metal_plate")
    assert list(found) == ["rd", "rd_expert", "rd_gii", "full"]
    assert {e.info.training["image_size"] for e in found.values()} == {128}
    demo = next(e for e in registry.entries.values() if e.info.training.get("image_size") == 256)
    image = np.asarray(Image.open(sorted((MPDD / "metal_plate" / "test" / "defect").glob("*.png"))[0]).convert("RGB"))
    gallery, text = variant_comparison(registry, demo, image)
    assert len(gallery) == 4 and "same budget" in text and "128 px, 200 iterations" in text
    assert all(p.stat().st_size <= 10 * 2**20 for d in shipped for p in [d / "model.safetensors"])
