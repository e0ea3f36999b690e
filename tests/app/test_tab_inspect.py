"""The Inspect tab's handlers (rdexpert.app.tab_inspect, rdexpert.app.inspection), without a browser: verdicts,
redraws without the network, refusals as messages.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from helpers import MPDD  # noqa: E402

from rdexpert.app.registry import Registry  # noqa: E402
from rdexpert.app.uploads import UploadError, prepare_dataset  # noqa: E402

from .support import (  # noqa: E402
    EXAMPLES,
    GRADIO_WARNINGS,
    ROOT,
    jpeg_bytes,
    png_bytes,
    select_event,
    skip_without_mpdd,
    zip_files,
)

pytestmark = GRADIO_WARNINGS


def test_inspect_handler_returns_a_verdict_and_the_redraw_reuses_it(app_registry, monkeypatch, parts):
    from rdexpert.app.header import first_choice
    from rdexpert.app.inspection import InspectState, inspect
    from rdexpert.app.tab_inspect import rerender, select_result

    key = first_choice(app_registry)
    paths = [str(EXAMPLES / "good_test_00003.png"), str(EXAMPLES / "defect_train_00066.png")]
    view = parts.inspect.view
    out = inspect(view, app_registry, key, paths, 0.5)
    assert set(out) == set(view.outputs)  # every output
    state, picture, fused, verdict, info, message = (
        out[view.state], out[view.input_image], out[view.fused], out[view.verdict], out[view.info], out[view.message])
    scales = [out[scale] for scale in view.scales]
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
    redrawn = rerender(view, state, 0.01)
    assert set(redrawn) == set(view.drawn)  # everything but the state and the message
    fused_low, verdict = redrawn[view.fused], redrawn[view.verdict]
    assert "threshold <b>0.01</b>" in verdict and 'data-verdict="anomalous"' in verdict
    assert not np.array_equal(fused_low, fused) or item.normalized_map.max() < 0.01
    picked = select_result(view, state, 0.5, select_event(1))
    chosen = picked[view.state]
    assert chosen.selected == 1 and state.selected == 0  # a new state; the old one is unchanged
    assert "defect_train_00066.png" in picked[view.info]


def test_inspect_draws_a_non_square_image_at_its_own_aspect_ratio(app_registry, tmp_path, parts):
    """The network sees a square, but the picture, the map and the scale maps are shown 4:3 as uploaded."""
    from rdexpert.app.header import first_choice
    from rdexpert.app.inspection import inspect

    wide = tmp_path / "wide.png"
    Image.open(EXAMPLES / "defect_train_00066.png").convert("RGB").resize((400, 300)).save(wide)
    view = parts.inspect.view
    out = inspect(view, app_registry, first_choice(app_registry), [str(wide)], 0.5)
    state, picture, fused = out[view.state], out[view.input_image], out[view.fused]
    scales = [out[scale] for scale in view.scales]
    item = state.items[0]
    assert item.original_size == (300, 400) and item.image.shape[0] == item.image.shape[1]  # the network's input
    for shown in (picture, fused, *scales):
        assert shown.shape[1] / shown.shape[0] == pytest.approx(4 / 3, abs=0.02)


def test_an_example_shows_its_ground_truth_beside_the_verdict(app_registry, tmp_path, parts):
    """An example's ground truth is shown beside the model's verdict, its mask outlined on the input; an upload's
    truth is not known. The example clicked is the one of the gallery the checkpoint's product shows."""
    from rdexpert.app.examples import ExampleSet
    from rdexpert.app.header import first_choice
    from rdexpert.app.inspection import inspect
    from rdexpert.app.sessions import Sessions
    from rdexpert.app.tab_inspect import inspect_example

    examples = ExampleSet.scan(ROOT / "assets" / "examples")
    sessions, key, view = Sessions(app_registry, tmp_path), first_choice(app_registry), parts.inspect.view
    shown = examples.for_category(app_registry.get(key).category)
    normal, defective = (next(i for i, e in enumerate(shown) if e.truth == w) for w in ("normal", "defective"))
    assert shown[defective].mask is not None and shown[normal].mask is None
    for index, truth in ((normal, "normal"), (defective, "defective")):
        out = inspect_example(view, sessions, examples, key, 0.5, select_event(index))
        state, verdict = out[view.state], out[view.verdict]
        assert state.items[0].truth == truth and f"ground truth: <b>{truth}</b>" in verdict
        assert (state.items[0].mask is not None) == (truth == "defective")
        assert ("ground-truth defect mask" in out[view.info]) == (truth == "defective")
        word = "ANOMALOUS" if 'data-verdict="anomalous"' in verdict else "NORMAL"
        assert f"model: <b>{word}</b>" in verdict
    picture = out[view.input_image]  # the defective example: its mask outlined in green
    assert np.any(np.all(picture == (0, 200, 0), axis=-1))
    verdict = inspect(view, app_registry, key, [shown[defective].path], 0.5)[view.verdict]
    assert "calibrated score" in verdict and "ground truth" not in verdict  # uploaded: its truth is not known


def test_inspect_handler_refusals_are_messages(tmp_path, parts):
    from rdexpert.app.inspection import MAX_INSPECT_IMAGES, inspect

    fake = tmp_path / "scan.png"
    fake.write_text("not an image")
    key = "any"  # the requests below are refused before a checkpoint is used
    cases = [
        (None, [str(fake)], "Choose a checkpoint first"),
        (key, [], "Upload an image"),
        (key, [str(fake)] * (MAX_INSPECT_IMAGES + 1), "the limit is"),
        (key, [str(fake)], "not an image"),
        ("no such checkpoint", [str(EXAMPLES / "good_test_00003.png")], "Checkpoint error"),
    ]
    view = parts.inspect.view
    for k, sources, words in cases:
        out = inspect(view, Registry(), k, sources, 0.5)
        state, message = out[view.state], out[view.message]
        assert state is None and words in message, (k, words, message)


def test_inspect_refuses_a_huge_image_from_its_header(tmp_path, monkeypatch, parts):
    """D5: a 5000x4000 PNG is refused from its header, before a pixel is decoded; an accepted big JPEG is decoded
    whole (as evaluation decodes it)."""
    from PIL import ImageFile

    from rdexpert.app.inspection import MAX_INSPECT_PIXELS, inspect, read_image

    skip_without_mpdd()
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
        view = parts.inspect.view
        out = inspect(view, registry, "any", [str(huge)], 0.5)
        state, message = out[view.state], out[view.message]
        seconds = time.perf_counter() - began
    assert state is None and "huge_scan.png" in message and "5000x4000" in message and "limit" in message
    assert seconds < 2.0
    image = read_image(big_jpeg)  # accepted (12 MP), decoded at full resolution: the score must not depend on the tab
    assert image.shape == (3000, 4000, 3)


def test_an_image_scores_the_same_in_inspect_as_in_evaluate(app_registry, tmp_path):
    """Item 5: a photo larger than a megapixel scored 0.577 in Inspect and 0.595 in Evaluate's table (Inspect
    decoded it downscaled); both now see the same pixels, and a request's images are run a few at a time."""
    from rdexpert.app.header import first_choice
    from rdexpert.app.inspection import _chunks, predict_items
    from rdexpert.checkpoint.pretrained import Checkpoint
    from rdexpert.data import Sample
    from rdexpert.evaluation.record import evaluate_checkpoint

    photos = [tmp_path / "defect_photo.jpg", tmp_path / "good_photo.jpg"]
    for name, photo in zip(("defect_train_00066.png", "good_test_00003.png"), photos):
        Image.open(EXAMPLES / name).convert("RGB").resize((2400, 1800)).save(photo, quality=92)
    key = first_choice(app_registry)
    predictor = app_registry.predictor(key)
    state = predict_items(app_registry, key, [str(p) for p in photos])
    samples = [Sample(photos[0], 1, None, "photo"), Sample(photos[1], 0, None, "good")]
    result = evaluate_checkpoint(Checkpoint(predictor.model, predictor.config), samples, device=predictor.device,
                                 model=predictor.model)
    for item, score in zip(state.items, result.scores):
        assert item.score == pytest.approx(float(score), abs=1e-5)
        assert item.normalized_score == pytest.approx(predictor.normalize(float(score)), abs=1e-5)
    assert _chunks(list("abcd"), [5, 5, 20, 1], 10) == [["a", "b"], ["c"], ["d"]]


def test_a_new_upload_replaces_the_files_before_it(parts):
    """Item 4: gradio's upload box appends new files to those there; the app keeps only the new ones."""
    from rdexpert.app.tab_inspect import keep_new_uploads

    tab = parts.inspect
    out = keep_new_uploads(tab.files, tab.count, ["/u/a.png", "/u/b.png"], 0)
    assert out == {tab.files: ["/u/a.png", "/u/b.png"], tab.count: 2}
    out = keep_new_uploads(tab.files, tab.count, ["/u/a.png", "/u/b.png", "/u/c.png"], 2)
    assert out == {tab.files: ["/u/c.png"], tab.count: 1}
    out = keep_new_uploads(tab.files, tab.count, ["/u/d.png"], 3)  # a file was removed meanwhile: all there is
    assert out == {tab.files: ["/u/d.png"], tab.count: 1}


def test_truncated_jpeg_is_a_message_in_inspect_and_refused_at_upload(app_registry, tmp_path, parts):
    """D6: the first half of a real JPEG: Inspect says so (no bare error); the fine-tune upload refuses it by name."""
    from rdexpert.app.header import first_choice
    from rdexpert.app.inspection import inspect
    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.ui import AppConfig

    data = jpeg_bytes()
    truncated = tmp_path / "half_part.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    view, ft = parts.inspect.view, parts.finetune
    out = inspect(view, app_registry, first_choice(app_registry), [str(truncated)], 0.5)
    state, message = out[view.state], out[view.message]
    assert state is None and "half_part.jpg" in message and "truncated" in message
    assert str(tmp_path) not in message

    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, path in enumerate(good):
        path.write_bytes(png_bytes(i))
    with pytest.raises(UploadError, match=r"half_part\.jpg.*truncated"):
        prepare_dataset(tmp_path / "d1", [*good, truncated])
    archive = zip_files(tmp_path / "parts.zip", {"good/a.png": png_bytes(0), "good/b.png": png_bytes(1),
                                            "good/half_part.jpg": data[: len(data) // 2]})
    with pytest.raises(UploadError, match=r"half_part\.jpg.*truncated"):
        prepare_dataset(tmp_path / "d2", [archive])
    cfg = AppConfig(registry=Registry(), workdir=tmp_path / "work")
    status = next(finetune(ft, cfg, [*map(str, good), str(truncated)], None, None, None, "rd", 64, 2, "t", False,
                           None))[ft.status]
    assert "Upload refused" in status and "half_part.jpg" in status and str(tmp_path) not in status
