"""rdexpert.evaluation.evaluate: an Evaluation's content-only maps, the report it writes and reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import CATEGORY, box_mask, rgb_array, save_image, with_input_fit
from PIL import Image

from rdexpert.data import list_samples
from rdexpert.evaluation.evaluate import SCORES_NAME, Evaluation, content_stack, evaluate, read_report_scores, write_report
from rdexpert.evaluation.metrics import compute_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


# -- evaluate -------------------------------------------------------------------------------------
def test_evaluating_a_padded_model_counts_the_picture_only(tiny_checkpoint, tiny_data):
    """The tiny category's 88 x 72 test images at 64 px: maps, masks and metrics over the 64 x 52 pictures."""
    padded = with_input_fit(tiny_checkpoint, "pad")
    samples = list_samples(tiny_data, CATEGORY, "test")
    result = evaluate(padded.model, samples, "cpu", progress=False)
    assert result.boxes.tolist() == [[6, 0, 52, 64]] * len(samples)  # 72 * 64 / 88 = 52.4 -> 52 rows, 6 above
    assert result.maps.shape == result.masks.shape == (len(samples), 52, 64)
    # the same scores as the Predictor's (one scoring rule), and metrics computed on exactly these pixels
    np.testing.assert_allclose(result.scores, [p.score for p in padded.predict([s.path for s in samples])], atol=1e-5)
    assert result.metrics == compute_metrics(result.scores, result.labels, result.maps, result.masks.astype(np.uint8))
    assert (result.image_size, result.input_fit) == (64, "pad")
    assert result.paths == [str(s.path) for s in samples] and result.labels.tolist() == [s.label for s in samples]


def test_an_evaluation_made_by_hand_is_a_squashed_one_without_boxes():
    result = Evaluation(metrics={}, scores=np.zeros(1), labels=np.zeros(1), maps=np.zeros((1, 4, 4)),
                        masks=np.zeros((1, 4, 4), bool), paths=["a.png"], seconds=0.0)
    assert (result.boxes, result.image_size, result.input_fit) == (None, None, "squash")


# -- content_stack --------------------------------------------------------------------------------
def test_pictures_of_several_shapes_stack_without_their_padding():
    maps = np.full((3, 8, 8), 99.0, np.float32)  # 99: padding
    maps[:2] = 1.0
    maps[2, 2:6] = 2.0  # the third picture is 4 rows high, 2 rows of padding above and below
    stacked = content_stack(maps, np.array([[0, 0, 8, 8], [0, 0, 8, 8], [2, 0, 4, 8]]))
    assert stacked.shape == (3, 8, 8) and (stacked[2] == 2.0).all() and not (stacked == 99.0).any()


def test_pictures_of_one_shape_are_cut_exactly():
    maps = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    stacked = content_stack(maps, np.array([[1, 0, 4, 6]] * 2))
    np.testing.assert_array_equal(stacked, maps[:, 1:5])
    np.testing.assert_array_equal(content_stack(maps, np.array([[0, 0, 6, 6]] * 2)), maps)  # squash: as they are


def test_masks_of_several_shapes_stay_masks_at_the_most_common_shape():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 2:4] = True  # rows 2..3 of a 4 x 8 picture at rows 2..5
    masks[2, 0:4] = True  # the top half of the whole square
    stacked = content_stack(masks, np.array([[2, 0, 4, 8], [2, 0, 4, 8], [0, 0, 8, 8]]))
    assert stacked.shape == (3, 4, 8) and stacked.dtype == bool  # two of three pictures are 4 x 8
    assert stacked[0, :2].all() and not stacked[0, 2:].any() and not stacked[1].any()
    assert stacked[2, :2].all() and not stacked[2, 2:].any()  # halved: still the top half


# -- write_report / read_report_scores ------------------------------------------------------------
@pytest.fixture
def made_by_hand(tmp_path) -> Evaluation:
    """Four 12 x 16 images (one file name with a comma), 16 px squash maps, one defect mask."""
    names = ["good/a.png", "good/b.png", "defect/c,d.png", "defect/e.png"]
    paths = [str(save_image(tmp_path / "images" / name, rgb_array(seed=i))) for i, name in enumerate(names)]
    maps = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    masks = np.zeros((4, 16, 16), bool)
    masks[2] = np.asarray(Image.fromarray(box_mask()).resize((16, 16), Image.NEAREST)) > 0
    return Evaluation(metrics={"image_auroc": 0.75, "pixel_auroc": np.float64(0.5)}, scores=np.array([0.1, 0.4, 0.9, 0.7]),
                      labels=np.array([0, 0, 1, 1]), maps=maps, masks=masks, paths=paths, seconds=1.0, image_size=16)


def test_a_report_holds_the_metrics_every_score_and_overlays(made_by_hand, tmp_path):
    out = write_report(made_by_hand, tmp_path / "report", "full (widget)", threshold=0.5, overlays=3)
    assert json.loads((out / "metrics.json").read_text()) == {"image_auroc": 0.75, "pixel_auroc": 0.5}
    assert "full (widget)" in (out / "metrics.md").read_text()
    assert (out / SCORES_NAME).read_text() == ("image,label,score\ngood/a.png,0,0.100000\ngood/b.png,0,0.400000\n"
                                               "defect/c_d.png,1,0.900000\ndefect/e.png,1,0.700000\n")
    # overlays: the 2 highest-scoring defects, then the 1 lowest-scoring normal image
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays == ["defect_c,d_score0.900.png", "defect_e_score0.700.png", "good_a_score0.100.png"]
    shapes = {name: np.asarray(Image.open(out / "overlays" / name)).shape for name in overlays}
    assert shapes["defect_c,d_score0.900.png"] == (16, 32, 3)  # ground truth beside the prediction
    assert shapes["defect_e_score0.700.png"] == shapes["good_a_score0.100.png"] == (16, 16, 3)  # no mask


def test_the_report_reads_back_every_image_score(made_by_hand, tmp_path):
    out = write_report(made_by_hand, tmp_path / "report", "run", threshold=None, overlays=3)
    assert read_report_scores(out) == [("good/a.png", 0, 0.1), ("good/b.png", 0, 0.4), ("defect/c_d.png", 1, 0.9),
                                       ("defect/e.png", 1, 0.7)]
    (out / SCORES_NAME).unlink()  # a report from before scores.csv: only the overlaid images, from their names
    assert read_report_scores(out) == [("c,d", 1, 0.9), ("e", 1, 0.7), ("a", 0, 0.1)]
    assert read_report_scores(tmp_path / "nothing here") == []
