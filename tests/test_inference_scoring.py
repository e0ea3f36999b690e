"""rdexpert.inference.scoring: image scores from maps (content only), the batches, and the one scoring loop.

A tiny model with random weights (64 px) is enough: the loop must give what the model itself gives.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import CATEGORY, SIZE

from rdexpert.data import list_samples
from rdexpert.inference.ood import pooled_features
from rdexpert.inference.scoring import ScoredBatch, content_scores, sample_batches, score_images
from rdexpert.model import ExpertTeacherStudent, ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> ExpertTeacherStudent:
    torch.manual_seed(0)
    return ExpertTeacherStudent(ModelConfig(image_size=SIZE), pretrained=False).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _direct(model, images, **switches):
    with torch.inference_mode():
        return model(images, **switches)


# -- content_scores -------------------------------------------------------------------------------
def test_the_score_is_the_max_of_the_map_over_the_picture_only():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 0] = 9.0  # padding row of the first picture (content rows 1..3)
    maps[0, 2, 1] = 2.0
    maps[1, 3, 3] = 5.0
    assert content_scores(maps).tolist() == [9.0, 5.0]  # no boxes: the whole map
    scores = content_scores(maps, np.array([[1, 0, 3, 4], [0, 0, 4, 4]]))
    assert scores.tolist() == [2.0, 5.0] and scores.dtype == np.float32
    assert content_scores(maps, [[0, 0, 1, 4], [0, 0, 2, 2]]).tolist() == [9.0, 0.0]  # box rows as plain lists


# -- sample_batches -------------------------------------------------------------------------------
def test_samples_come_in_order_fitted_with_their_boxes(tiny_data):
    samples = list_samples(tiny_data, CATEGORY, "test")
    batches = list(sample_batches(samples, SIZE, batch_size=3, fit="pad"))
    assert [len(b["path"]) for b in batches] == [3, 1]
    assert [p for b in batches for p in b["path"]] == [str(s.path) for s in samples]
    assert [int(label) for b in batches for label in b["label"]] == [s.label for s in samples]
    first = batches[0]
    assert first["image"].shape == (3, 3, SIZE, SIZE) and first["mask"].shape == (3, 1, SIZE, SIZE)
    assert first["box"].tolist() == [[6, 0, 52, 64]] * 3  # 88 x 72 pictures padded: 52 rows, 6 above
    squashed = next(iter(sample_batches(samples, SIZE, batch_size=2, fit="squash")))
    assert squashed["box"].tolist() == [[0, 0, SIZE, SIZE]] * 2


# -- score_images ---------------------------------------------------------------------------------
def test_scoring_gives_the_models_own_maps_and_their_max(model, images):
    scored = list(score_images(model, [images[:2], images[2:]], "cpu"))
    assert [len(s.scores) for s in scored] == [2, 1] and all(isinstance(s, ScoredBatch) for s in scored)
    maps = np.concatenate([s.maps for s in scored])
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, _direct(model, images).maps.fused[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([s.scores for s in scored]), maps.reshape(3, -1).max(1))
    assert scored[0].scale_maps is None and scored[0].pooled_reference is None  # only when asked for
    assert scored[1].batch is not None and torch.equal(scored[1].batch, images[2:])


def test_scales_and_pooled_reference_come_from_the_same_forward(model, images):
    (scored,) = score_images(model, [images], "cpu", scales=True, pool_reference=pooled_features)
    direct = _direct(model, images)
    assert scored.scale_maps.shape == (3, 3, SIZE, SIZE)
    np.testing.assert_allclose(scored.scale_maps, torch.cat(direct.maps.scales, 1).numpy(), rtol=1e-5, atol=1e-6)
    assert scored.pooled_reference.shape == (3, 24 + 40 + 112)  # Lite0's stride-4/8/16 channels
    np.testing.assert_allclose(scored.pooled_reference, pooled_features(direct.reference).numpy(), rtol=1e-5, atol=1e-6)


def test_reference_and_gate_switches_reach_the_model(model, images):
    nudged = copy.deepcopy(model)  # a fresh teacher is the expert itself: move it, so the references differ
    with torch.no_grad():
        for p in nudged.trained_teacher.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    for switches in ({"reference": "expert"}, {"reference": "teacher"}, {"gate": "open"}):
        (scored,) = score_images(nudged, [images], "cpu", **switches)
        np.testing.assert_allclose(scored.maps, _direct(nudged, images, **switches).maps.fused[:, 0].numpy(),
                                   rtol=1e-5, atol=1e-6)
    default, expert, open_gate = (next(score_images(nudged, [images], "cpu", **switches)).maps
                                  for switches in ({}, {"reference": "expert"}, {"gate": "open"}))
    assert not np.allclose(default, expert) and not np.allclose(default, open_gate)


def test_a_dict_batch_is_scored_inside_its_boxes(model, images):
    boxes = torch.tensor([[16, 0, 32, 64], [0, 8, 64, 16], [0, 0, 64, 64]])
    batch = {"image": images, "box": boxes}
    (scored,) = score_images(model, [batch], "cpu")
    assert scored.batch is batch
    expected = [scored.maps[0, 16:48].max(), scored.maps[1, :, 8:24].max(), scored.maps[2].max()]
    np.testing.assert_array_equal(scored.scores, np.array(expected, np.float32))


def test_the_callers_code_runs_in_its_own_grad_mode(model, images):
    for scored in score_images(model, [images[:1], images[1:]], "cpu"):
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        assert scored.scores.shape == (len(scored.batch),)
