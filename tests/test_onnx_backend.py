"""The Predictor's ONNX Runtime backend: the demo checkpoint gives the same predictions as with PyTorch,
the exported graph is cached per model, and the switches it does not serve go to PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rdexpert.inference.export import TOLERANCE
from rdexpert.inference.onnx_backend import model_key
from rdexpert.inference.predictor import Predictor
from rdexpert.model import ExpertTeacherStudent, ModelConfig, capture_gates

DEMO = Path(__file__).resolve().parent.parent / "checkpoints" / "metal_plate"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(mpdd_root) -> list[Path]:
    test = mpdd_root / "metal_plate" / "test"
    return sorted((test / "good").iterdir())[:2] + sorted((test / "defect").iterdir())[:3]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def both(cache) -> tuple[Predictor, Predictor]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RDEXPERT_CACHE", str(cache))
        onnx = Predictor.from_pretrained(DEMO, device="cpu", backend="onnxruntime")
    return Predictor.from_pretrained(DEMO, device="cpu"), onnx


def test_onnxruntime_predictions_match_torch(both, images):
    torch_predictor, onnx_predictor = both
    assert (torch_predictor.backend, onnx_predictor.backend) == ("torch", "onnxruntime")
    assert onnx_predictor.ood is not None  # the out-of-distribution check runs from the graph's pooled output
    expected, got = torch_predictor.predict(images, batch_size=2), onnx_predictor.predict(images, batch_size=2)
    assert [p.label for p in got] == [p.label for p in expected]
    assert sorted({p.label for p in got}) == [0, 1]  # the images hold both verdicts: the comparison is not trivial
    for a, b in zip(expected, got):
        assert a.anomaly_map.shape == b.anomaly_map.shape
        assert np.abs(a.anomaly_map - b.anomaly_map).max() < TOLERANCE
        assert max(np.abs(x - y).max() for x, y in zip(a.scale_maps, b.scale_maps)) < TOLERANCE
        assert abs(a.score - b.score) < TOLERANCE
        assert b.ood_score == pytest.approx(a.ood_score, rel=1e-3) and b.out_of_distribution == a.out_of_distribution


def test_the_export_is_cached_and_reused(both, cache, monkeypatch):
    files = list((cache / "onnx").glob("*.onnx"))
    assert len(files) == 1 and files[0] == both[1].onnx.path
    written = files[0].stat().st_mtime_ns
    monkeypatch.setenv("RDEXPERT_CACHE", str(cache))
    again = Predictor.from_pretrained(DEMO, device="cpu", backend="onnxruntime")
    assert again.onnx.path == files[0] and files[0].stat().st_mtime_ns == written


def test_other_switches_and_forced_torch_run_in_torch(both, images):
    torch_predictor, onnx_predictor = both
    for kwargs in ({"reference": "expert"}, {"gate": "open"}, {"backend": "torch"}):
        a, b = torch_predictor.predict(images[2], **kwargs), onnx_predictor.predict(images[2], **kwargs)
        assert np.array_equal(a.anomaly_map, b.anomaly_map), kwargs  # the very same PyTorch forward
    with capture_gates(onnx_predictor.model) as gates:  # what the app's walkthrough does
        onnx_predictor.predict(images[2], backend="torch")
    assert gates


def test_bad_backend_is_refused(both, images):
    with pytest.raises(ValueError, match="unknown backend"):
        both[1].predict(images[0], backend="tensorrt")


def test_the_cache_key_follows_the_weights():
    model = ExpertTeacherStudent(ModelConfig(backbone="tf_efficientnet_lite0", image_size=64), pretrained=False)
    key = model_key(model, pooled_expert=True)
    assert model_key(model, pooled_expert=False) != key
    with torch.no_grad():
        next(model.decoder.parameters()).add_(1e-3)
    assert model_key(model, pooled_expert=True) != key


def test_cli_predict_on_onnxruntime_writes_the_same_scores(images, cache, tmp_path, monkeypatch):
    import csv

    from rdexpert.cli import main

    monkeypatch.setenv("RDEXPERT_CACHE", str(cache))
    rows = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert main(["predict", "--checkpoint", str(DEMO), "--input", *map(str, images[1:3]), "--out", str(out),
                     "--device", "cpu", "--no-overlays", "--backend", backend]) == 0
        with open(out / "predictions.csv") as f:
            rows[backend] = list(csv.DictReader(f))
    assert [r["file"] for r in rows["torch"]] == [r["file"] for r in rows["onnxruntime"]] and len(rows["torch"]) == 2
    for a, b in zip(rows["torch"], rows["onnxruntime"]):
        assert abs(float(a["score"]) - float(b["score"])) < TOLERANCE and a["label"] == b["label"]


def test_the_app_registry_loads_predictors_on_its_backend(cache, monkeypatch):
    from rdexpert.app.registry import Registry

    monkeypatch.setenv("RDEXPERT_CACHE", str(cache))
    shared = Registry(device="cpu", backend="onnxruntime")
    (entry,) = shared.scan(DEMO, source="shipped")
    session = Registry(parent=shared)  # a browser session's registry follows the app's backend
    assert session.backend == "onnxruntime" and shared.predictor(entry.key).backend == "onnxruntime"
