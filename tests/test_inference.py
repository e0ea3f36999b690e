"""The Predictor, on the tiny checkpoint trained in conftest.py (seconds on a CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CATEGORY, SIZE, with_input_fit
from PIL import Image

from rdexpert.data import ContentBox, ImageLoadError, content_box, fit_image, image_to_tensor, load_image
from rdexpert.inference.predictor import Prediction, Predictor, to_rgb
from rdexpert.model import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint) -> Predictor:
    return Predictor.from_pretrained(tiny_checkpoint, device="cpu")


def _test_images(data: Path) -> list[Path]:
    return sorted((data / CATEGORY / "test").rglob("*.png"))


# -- Predictor ------------------------------------------------------------------------------------
def test_single_image_gives_a_consistent_prediction(predictor, tiny_data):
    path = _test_images(tiny_data)[0]
    p = predictor.predict(path)
    assert isinstance(p, Prediction) and p.path == str(path) and p.original_size == (72, 88)
    box = content_box(72, 88, SIZE, predictor.model.config.input_fit)  # the picture's region of the S x S input
    assert p.image.shape == (box.height, box.width, 3) and p.image.dtype == np.uint8
    assert p.anomaly_map.shape == p.image.shape[:2] and p.anomaly_map.dtype == np.float32
    assert len(p.scale_maps) == 3 and all(m.shape == p.image.shape[:2] and m.dtype == np.float32 for m in p.scale_maps)
    assert p.score == pytest.approx(float(p.anomaly_map.max()), rel=1e-6)
    assert p.normalized_score == pytest.approx(predictor.normalize(p.score))
    assert p.label == int(p.score >= predictor.threshold)
    assert predictor.device.type == "cpu" and predictor.config["model"]["image_size"] == SIZE


def test_every_input_kind_is_preprocessed_like_a_file(predictor, tiny_data):
    path = _test_images(tiny_data)[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    inputs = [path, str(path), Image.open(path), rgb, rgb.astype(np.uint16) * 257, rgb / 255.0, rgba]
    scores = [p.score for p in predictor.predict(inputs)]
    assert np.allclose(scores, scores[0], rtol=0, atol=1e-6), scores
    grey = predictor.predict(rgb[..., 0])
    assert grey.path is None and np.array_equal(grey.image[..., 0], grey.image[..., 2])
    with pytest.raises(ValueError, match="H x W x 3"):
        predictor.predict(np.zeros((3, 40, 40), np.uint8))
    with pytest.raises(TypeError, match="a list of those"):
        predictor.predict(42)


def test_to_rgb_matches_the_training_loader(tiny_data):
    path = _test_images(tiny_data)[0]
    from rdexpert.data import load_image

    assert np.array_equal(to_rgb(Image.open(path)), load_image(path))


def test_folder_and_list_give_lists_and_batching_does_not_change_results(predictor, tiny_data):
    folder = tiny_data / CATEGORY / "test" / "defect"
    by_folder = predictor.predict(folder, batch_size=1)
    assert isinstance(by_folder, list) and [p.path for p in by_folder] == [str(f) for f in sorted(folder.glob("*.png"))]
    images = _test_images(tiny_data)
    one_by_one = predictor.predict(images, batch_size=1)
    batched = predictor.predict(images, batch_size=3)
    assert [p.path for p in batched] == [str(p) for p in images]
    for a, b in zip(one_by_one, batched):
        assert np.allclose(a.anomaly_map, b.anomaly_map, atol=1e-5)
    assert len(list(predictor.iter_predict(images, batch_size=2))) == len(images)


def test_switches_change_the_maps_without_reloading(predictor, tiny_data):
    path = _test_images(tiny_data)[-1]
    model = predictor.model
    maps = {(r, g): predictor.predict(path, reference=r, gate=g).anomaly_map
            for r, g in [("teacher", "gated"), ("teacher", "open"), ("teacher", "closed"), ("expert", "gated")]}
    assert predictor.model is model
    base = maps[("teacher", "gated")]
    for key, other in maps.items():
        if key != ("teacher", "gated"):
            assert not np.allclose(base, other), key
    with pytest.raises(ValueError, match="gate"):
        predictor.predict(path, gate="half")


def test_threshold_sits_at_one_half_and_can_be_moved(tiny_checkpoint, tiny_data):
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    assert predictor.normalize(predictor.threshold) == pytest.approx(0.5)
    p = predictor.predict(_test_images(tiny_data)[0])
    normalized_map = predictor.map_to_normalized(p.anomaly_map)
    assert normalized_map.dtype == np.float32 and 0 <= normalized_map.min()
    assert normalized_map.max() == pytest.approx(p.normalized_score, abs=1e-6)
    predictor.threshold = p.score - 1e-3
    assert predictor.predict(p.image).label == 1
    assert predictor.normalize(predictor.threshold) == pytest.approx(0.5)
    fixed = Predictor.from_pretrained(tiny_checkpoint, device="cpu", threshold=p.score + 1e-3)
    assert fixed.predict(p.image).label == 0
    with pytest.raises(ValueError, match="no F1 threshold"):
        Predictor.from_pretrained(tiny_checkpoint, device="cpu", threshold="f1")
    with pytest.raises(TypeError, match="unexpected arguments"):
        Predictor.from_pretrained(tiny_checkpoint, device="cpu", thresold=1.0)


def test_arrays_that_are_no_picture_are_refused_not_scored_black(predictor, mpdd_root):
    plate = np.asarray(Image.open(mpdd_root / "metal_plate" / "test" / "good" / "test_00000.png").convert("RGB"))
    floats = plate / 255.0
    floats[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(floats)
    with pytest.raises(ValueError, match="infinite"):
        predictor.predict(np.where(floats > 0.5, np.inf, 0.0))
    with pytest.raises(ValueError, match="complex"):
        predictor.predict(plate * (1 + 1j))
    with pytest.raises(ValueError, match="object"):
        predictor.predict([plate, plate.astype(object)])  # in a list too: nothing is scored
    for tiny in (np.zeros((0, 0, 3), np.uint8), plate[:1, :1]):
        with pytest.raises(ValueError, match="at least 2 x 2 pixels"):
            predictor.predict(tiny)


def test_folder_prediction_recurses_into_subfolders(predictor, tiny_data):
    folder = tiny_data / CATEGORY / "test"  # good/ and defect/ inside, no image at the top
    predictions = predictor.predict(folder)
    assert [p.path for p in predictions] == [str(f) for f in sorted(folder.rglob("*.png"), key=str)]
    assert {Path(p.path).parent.name for p in predictions} == {"good", "defect"}


def test_unreadable_files_can_be_skipped_in_a_folder_but_not_for_one_image(predictor, mpdd_root, tmp_path):
    source = mpdd_root / "metal_plate" / "test" / "good"
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("test_00000.png", "test_00001.png"):
        shutil.copyfile(source / name, folder / name)
    broken = folder / "test_00000b.png"  # sorts between the two good ones
    broken.write_bytes((source / "test_00000.png").read_bytes()[:300])  # truncated
    with pytest.raises(ImageLoadError, match="test_00000b.png"):
        predictor.predict(folder)  # default: the first unreadable file raises
    skipped = []
    predictions = predictor.predict(folder, batch_size=2, skipped=skipped)
    assert [Path(p.path).name for p in predictions] == ["test_00000.png", "test_00001.png"]
    assert [(path, type(error)) for path, error in skipped] == [(str(broken), ImageLoadError)]
    alone = predictor.predict(folder / "test_00001.png")
    assert predictions[1].score == pytest.approx(alone.score, abs=1e-6)  # the skip does not shift the batch
    streamed = []
    assert len(list(predictor.iter_predict([broken, folder / "test_00001.png"], skipped=streamed))) == 1
    assert len(streamed) == 1
    with pytest.raises(ImageLoadError, match="test_00000b.png"):
        predictor.predict(broken, skipped=[])  # a single image always raises


def test_a_padded_model_keeps_the_aspect_ratio_and_never_scores_the_padding(tiny_checkpoint, mpdd_root):
    """A 300 x 180 (W x H) crop of a real plate, padded to 64: the maps are the picture's 64 x 38 region (the
    original aspect ratio), the score is the max over that region only, and the map goes back to 180 x 300."""
    plate = load_image(mpdd_root / "metal_plate" / "test" / "defect" / "test_00026.png")
    crop = np.ascontiguousarray(plate[150:330, 100:400])  # 180 rows, 300 columns
    padded = with_input_fit(tiny_checkpoint, "pad")
    p = padded.predict(crop)
    # 180 * 64 / 300 = 38.4 -> 38 rows, centred: (64 - 38) // 2 = 13 rows of padding above, 13 below
    box = content_box(180, 300, SIZE, "pad")
    assert box == ContentBox(top=13, left=0, height=38, width=64)
    assert p.original_size == (180, 300) and p.image.shape == (38, 64, 3) and p.anomaly_map.shape == (38, 64)
    assert all(m.shape == (38, 64) for m in p.scale_maps)
    assert p.image.shape[1] / p.image.shape[0] == pytest.approx(300 / 180, abs=1 / 38)  # within a row's rounding
    assert p.map_at_original_size().shape == (180, 300)
    # the same forward by hand: the whole padded 64 x 64 map, and its picture rows 13..50
    with torch.inference_mode():
        whole = padded.model(image_to_tensor(fit_image(crop, SIZE, "pad"))[None]).maps.fused[0, 0].numpy()
    np.testing.assert_allclose(p.anomaly_map, whole[13:51], atol=1e-6)
    assert p.score == pytest.approx(float(whole[13:51].max()), abs=1e-6)
    assert p.normalized_score == pytest.approx(padded.normalize(p.score))


def test_a_square_image_scores_the_same_padded_or_squashed(tiny_checkpoint, mpdd_root):
    """For a square image "pad" is "squash", bit for bit: the shipped (squash) checkpoints' scores are kept."""
    plate = load_image(mpdd_root / "metal_plate" / "test" / "defect" / "test_00026.png")
    a, b = with_input_fit(tiny_checkpoint, "squash").predict(plate), with_input_fit(tiny_checkpoint, "pad").predict(plate)
    assert a.score == b.score and np.array_equal(a.anomaly_map, b.anomaly_map) and a.image.shape == (SIZE, SIZE, 3)
    shipped = sorted((ROOT / "checkpoints").glob("*/config.json"))
    assert shipped and all(ModelConfig(**json.loads(c.read_text())["model"]).input_fit == "squash" for c in shipped)
