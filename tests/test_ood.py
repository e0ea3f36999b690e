"""The out-of-distribution check (rdexpert.inference.ood): the shrunk Gaussian, the threshold rule, storage in a checkpoint,
prediction and the CLI column, and on the shipped metal_plate checkpoint: a texture is flagged, a defect is not."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CATEGORY

from rdexpert.checkpoint.folder import CONFIG_NAME, read_config, training_split, update_config
from rdexpert.checkpoint.format import OOD_NAME
from rdexpert.cli import main
from rdexpert.inference.ood import (
    THRESHOLD_FACTOR,
    FeatureGaussian,
    calibrate_ood,
    fit_checkpoint_ood,
    leave_one_out_distances,
    load_ood,
    save_ood,
)
from rdexpert.inference.predictor import Predictor
from rdexpert.inference.scoring import sample_batches, score_images

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "metal_plate"


def _features(n: int, dims: int = 40, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    """Correlated Gaussian features (a few strong directions, like pooled CNN features), optionally shifted."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(dims, dims)) * np.linspace(2.0, 0.1, dims)
    return torch.from_numpy(rng.normal(size=(n, dims)) @ mixing.T + shift).float()


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    shutil.copytree(checkpoint, tmp_path / "copy")
    return tmp_path / "copy"


# -- the statistic and the threshold rule ---------------------------------------------------------
def test_the_gaussian_is_ledoit_wolf_shrinkage_and_keeps_the_total_variance():
    sklearn = pytest.importorskip("sklearn.covariance")
    train, probe = _features(30), _features(5, seed=1, shift=0.5)
    gaussian = FeatureGaussian.fit(train)  # 29 directions < 64: exact
    reference = sklearn.LedoitWolf().fit(train.double().numpy())
    assert gaussian.shrinkage == pytest.approx(reference.shrinkage_, rel=1e-6)
    assert gaussian.distances(probe) == pytest.approx(np.sqrt(reference.mahalanobis(probe.double().numpy())), rel=1e-4)
    small = FeatureGaussian.fit(train, max_components=8)  # fewer directions: the rest shares one variance
    total = float(small.variances.sum()) + small.residual_variance * (small.dims - 8)
    assert total == pytest.approx(np.trace(reference.covariance_), rel=1e-4)


def test_threshold_is_the_factor_times_the_largest_held_out_distance():
    train, held_out = _features(30), _features(4, seed=1)
    ood = calibrate_ood(train, held_out)
    distances = ood.gaussian.distances(held_out)
    assert ood.threshold == pytest.approx(THRESHOLD_FACTOR * distances.max())
    assert ood.info["source"] == "held-out normal training images" and ood.info["calibration_images"] == 4
    assert ood.info["fitted_images"] == 30 and ood.info["calibration_distances"] == pytest.approx(distances, abs=1e-3)
    assert (ood.scores(held_out) <= 1 / THRESHOLD_FACTOR + 1e-9).all()  # normals sit far inside
    assert (ood.scores(_features(5, seed=2, shift=100.0)) > 1).all()  # a far shifted population is out


def test_without_held_out_images_the_training_images_are_scored_leave_one_out():
    train = _features(12)
    ood = calibrate_ood(train, None)
    loo = leave_one_out_distances(train)
    assert "leave-one-out" in ood.info["source"] and ood.threshold == pytest.approx(THRESHOLD_FACTOR * loo.max())
    assert loo.min() > FeatureGaussian.fit(train).distances(train).max() * 0.5  # honest: not the in-sample fit
    with pytest.warns(UserWarning, match="too few"):
        assert calibrate_ood(train[:2], None) is None  # leave-one-out would fit on one image
    with pytest.warns(UserWarning, match="too few"):
        assert calibrate_ood(train[:1], train[1:2]) is None


# -- storage ---------------------------------------------------------------------------------------
def test_save_and_load_round_trip_and_a_broken_file_only_turns_the_check_off(tmp_path, caplog):
    ood = calibrate_ood(_features(30), _features(4, seed=1))
    section = save_ood(ood, tmp_path)
    config = {"ood": section}
    assert section["sha256"] and section["threshold"] == ood.threshold and (tmp_path / OOD_NAME).is_file()
    loaded = load_ood(tmp_path, config, dims=40)
    probe = _features(6, seed=3, shift=1.0)
    assert loaded.threshold == ood.threshold and loaded.scores(probe) == pytest.approx(ood.scores(probe), rel=1e-5)
    assert load_ood(tmp_path, {}) is None  # an older checkpoint: no check, no warning
    with caplog.at_level(logging.WARNING, logger="rdexpert.inference.ood"):
        assert load_ood(tmp_path, config, dims=176) is None  # another backbone's features
        (tmp_path / OOD_NAME).write_bytes((tmp_path / OOD_NAME).read_bytes()[:-4] + b"\0\0\0\0")
        assert load_ood(tmp_path, config) is None  # replaced: the hash differs
        (tmp_path / OOD_NAME).unlink()
        assert load_ood(tmp_path, config) is None
    assert [w for w in ("does not fit", "SHA-256", "missing") if w in caplog.text] == ["does not fit", "SHA-256",
                                                                                      "missing"]


def test_training_stores_the_check_and_predictions_carry_it(tiny_checkpoint, tiny_data):
    config = read_config(tiny_checkpoint)
    section = config["ood"]
    assert (tiny_checkpoint / OOD_NAME).is_file() and section["fitted_images"] == config["training"]["train_images"]
    assert section["calibration_images"] == config["training"]["holdout_images"] >= 1
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    assert predictor.ood is not None and predictor.ood.threshold == section["threshold"]
    images = sorted((tiny_data / CATEGORY / "test").rglob("*.png"))
    teacher = predictor.predict(images)
    expert = predictor.predict(images, reference="expert")  # reuses the scoring forward's expert features
    for a, b in zip(teacher, expert):
        assert isinstance(a.out_of_distribution, bool) and a.out_of_distribution == (a.ood_score > 1)
        assert a.ood_score == pytest.approx(b.ood_score, rel=1e-4)


def test_a_checkpoint_without_the_check_still_loads_and_predicts(tiny_checkpoint, tiny_data, tmp_path, capsys):
    folder = _copy(tiny_checkpoint, tmp_path)
    config = read_config(folder)
    del config["ood"]
    (folder / CONFIG_NAME).write_text(json.dumps(config))  # as written before the check existed
    (folder / OOD_NAME).unlink()
    image = tiny_data / CATEGORY / "test" / "good" / "000.png"
    prediction = Predictor.from_pretrained(folder, device="cpu").predict(image)
    assert prediction.out_of_distribution is None and prediction.ood_score is None
    out = tmp_path / "predicted"
    assert main(["predict", "--checkpoint", str(folder), "--input", str(tiny_data / CATEGORY / "test"),
                 "--out", str(out), "--device", "cpu", "--no-overlays"]) == 0
    rows = _rows(out)
    assert rows and all(r["out_of_distribution"] == "" and r["ood_score"] == "" for r in rows)
    assert "no out-of-distribution check" in capsys.readouterr().err


def test_cli_predict_writes_the_columns_and_fit_ood_restores_the_training_time_check(tiny_checkpoint, tiny_data,
                                                                                     tmp_path):
    out = tmp_path / "predicted"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(tiny_data / CATEGORY / "test"),
                 "--out", str(out), "--device", "cpu", "--no-overlays"]) == 0
    rows = _rows(out)
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    for row in rows:
        expected = predictor.predict(row["file"])
        assert int(row["out_of_distribution"]) == int(expected.out_of_distribution)
        assert float(row["ood_score"]) == pytest.approx(expected.ood_score, abs=1e-3)
    folder = _copy(tiny_checkpoint, tmp_path)
    stored = read_config(folder)["ood"]
    update_config(folder, ood=None)
    (folder / OOD_NAME).unlink()
    assert main(["fit-ood", "--checkpoint", str(folder), "--data-root", str(tiny_data), "--device", "cpu"]) == 0
    again = read_config(folder)["ood"]
    # the same split (stored holdout fraction and seed) and the same frozen expert: the same check
    assert again["threshold"] == pytest.approx(stored["threshold"], rel=1e-5)
    assert again["fitted_images"] == stored["fitted_images"] and Predictor.from_pretrained(folder, device="cpu").ood


# -- the shipped checkpoint on real images --------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> Predictor:
    if not (SHIPPED / CONFIG_NAME).is_file():
        pytest.skip("the shipped metal_plate checkpoint is not here")
    return Predictor.from_pretrained(SHIPPED, device="cpu")


def test_shipped_checkpoint_flags_a_texture_but_not_a_defect_of_its_product(shipped, mpdd_root, dtd_root):
    assert shipped.ood is not None, "checkpoints/metal_plate lacks its check: rdexpert fit-ood --checkpoint it"
    test = mpdd_root / "metal_plate" / "test"
    defects = [test / "defect" / "test_00026.png", test / "defect" / "test_00027.png"]
    textures = [dtd_root / "cracked" / "cracked_0004.jpg", dtd_root / "banded" / "banded_0002.jpg"]
    plate = shipped.predict([*defects, test / "good" / sorted(p.name for p in (test / "good").iterdir())[0]])
    assert [p.out_of_distribution for p in plate] == [False] * 3
    assert [p.out_of_distribution for p in shipped.predict(textures)] == [True, True]


def test_shipped_check_is_reproducible_from_the_training_split(shipped, mpdd_root):
    """fit-ood rebuilds the training run's own split: its held-out images score as the calibration recorded."""
    _, holdout = training_split(shipped.config, mpdd_root)
    scores = [s for b in score_images(shipped.model, sample_batches(holdout, shipped.image_size, fit=shipped.model.config.input_fit), "cpu")
              for s in b.scores.tolist()]
    assert scores == pytest.approx(shipped.config["calibration"]["holdout_scores"], abs=1e-5)
    refit = fit_checkpoint_ood(SHIPPED, mpdd_root, device="cpu", write=False)
    assert refit.threshold == pytest.approx(shipped.ood.threshold, rel=1e-4)


# -- the app ---------------------------------------------------------------------------------------
def test_inspect_warns_in_plain_words_above_the_verdict(tmp_path):
    from rdexpert.app.inspection import InspectItem, InspectState, render
    from rdexpert.app.registry import Registry
    from rdexpert.app.ui import AppConfig, build_demo

    view = build_demo(AppConfig(registry=Registry(), workdir=tmp_path)).rdx_page.inspect.view
    image, heat = np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 0.9, np.float32)
    items = [InspectItem("bottle.jpg", None, image, heat, [heat] * 3, 3.0, 0.9, True, 4.2),
             InspectItem("plate.png", None, image, heat, [heat] * 3, 3.0, 0.9, False, 0.2)]
    state = InspectState("k", items, seconds=0.1, device="cpu", raw_threshold=1.0, load_seconds=None,
                         product="metal_plate")
    out = render(view, state, 0.5)
    gallery, verdict = out[view.results], out[view.verdict]
    assert "This does not look like a metal_plate image the model was trained on" in verdict
    assert "not meaningful" in verdict and 'data-verdict="anomalous"' in verdict
    assert "NOT THE TRAINED PRODUCT" in gallery.value[0]["caption"]  # the gallery caption too
    verdict = render(view, state.select(1), 0.5)[view.verdict]
    assert "does not look like" not in verdict  # a defect of the product: only the verdict
