"""ONNX export of a tiny trained checkpoint, checked with ONNX Runtime against PyTorch: the dynamo exporter
(the default) and the TorchScript one it falls back to."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from helpers import CATEGORY, SIZE
from torchvision.transforms.v2.functional import gaussian_blur as torchvision_blur

from rdexpert.checkpoint.folder import CheckpointInfo, load_checkpoint
from rdexpert.cli import main
from rdexpert.data import content_box, fit_image, image_to_tensor, load_image
from rdexpert.inference.export import OPSET, TOLERANCE, compare_with_onnxruntime, export_onnx, onnx_metadata
from rdexpert.inference.predictor import Predictor
from rdexpert.model.anomaly_map import blur_kernel_size, gaussian_blur

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def onnx_file(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--out", str(path)]) == 0
    return path


def test_cli_export_uses_the_dynamo_exporter_and_writes_one_file(onnx_file):
    metadata = onnx_metadata(onnx_file)
    assert (metadata["exporter"], metadata["opset"], metadata["torch"]) == ("dynamo", str(OPSET), torch.__version__)
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == ["model.onnx"]  # weights inside, no .data file
    graph = onnx.load(str(onnx_file)).graph
    batch_axes = [v.type.tensor_type.shape.dim[0].dim_param for v in [*graph.input, *graph.output]]
    assert batch_axes == ["batch"] * 4, batch_axes


def test_blur_is_torchvisions():
    """To float rounding: ours is two matrix products (rdexpert.model.anomaly_map), torchvision's one 2-D conv."""
    x = torch.rand(3, 1, 70, 90) * 3
    size = blur_kernel_size(4.0)
    expected = torchvision_blur(x, kernel_size=[size, size], sigma=[4.0, 4.0])
    torch.testing.assert_close(gaussian_blur(x, 4.0), expected, atol=1e-5, rtol=0)


def test_onnx_maps_match_the_predictor_on_real_images(onnx_file, tiny_checkpoint, tiny_data):
    """Inputs fitted as the checkpoint says (its input_fit); the Predictor's maps and score cover the picture only,
    so the ONNX maps are cut to the same content box (the whole square for "squash")."""
    paths = sorted((tiny_data / CATEGORY / "test").rglob("*.png"))
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    fit = predictor.model.config.input_fit
    expected = predictor.predict(paths)
    pictures = [load_image(p) for p in paths]
    boxes = [content_box(*picture.shape[:2], SIZE, fit) for picture in pictures]
    batch = torch.stack([image_to_tensor(fit_image(picture, SIZE, fit)) for picture in pictures]).numpy()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for images in (batch, batch[:1]):  # the batch axis is dynamic
        fused, scales, score = session.run(["anomaly_map", "scale_maps", "score"], {"image": images})
        assert fused.shape == (len(images), 1, SIZE, SIZE) and scales.shape == (len(images), 3, SIZE, SIZE)
        for i in range(len(images)):
            assert score[i] == fused[i].max()  # the graph's score: the whole square's maximum
            picture_map = boxes[i].crop(fused[i, 0])
            assert np.abs(picture_map - expected[i].anomaly_map).max() <= TOLERANCE
            assert np.abs(boxes[i].crop(scales[i].transpose(1, 2, 0)).transpose(2, 0, 1)
                          - np.stack(expected[i].scale_maps)).max() <= TOLERANCE
            assert abs(picture_map.max() - expected[i].score) <= TOLERANCE


def test_onnx_metadata_carries_config_and_threshold(onnx_file, tiny_checkpoint):
    metadata = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    config = json.loads(metadata["rdexpert_config"])
    assert config["model"]["backbone"] == "tf_efficientnet_lite0" and "source" not in config
    threshold = Predictor.from_pretrained(tiny_checkpoint, device="cpu").threshold
    assert float(metadata["threshold"]) == threshold
    reference = CheckpointInfo.from_config(config).default_reference  # the checkpoint's own default
    assert (metadata["reference"], metadata["gate"], metadata["image_size"]) == (reference, "gated", str(SIZE))


def test_torchscript_fallback_with_other_switches(tiny_checkpoint, tmp_path):
    """Opset 17 is below what the dynamo exporter writes: one warning, then the TorchScript exporter, same parity."""
    model, config = load_checkpoint(tiny_checkpoint)
    with pytest.warns(UserWarning, match=r"dynamo ONNX exporter failed \(opset 17 is below 18.*TorchScript") as caught:
        path = export_onnx(model, tmp_path / "expert_open.onnx", config, reference="expert", gate="open", opset=17)
    assert len(caught) == 1
    metadata = onnx_metadata(path)
    assert (metadata["exporter"], metadata["opset"], metadata["reference"], metadata["gate"]) == (
        "torchscript", "17", "expert", "open")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (3, 1):  # the batch axis is dynamic on this path too
        images = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        differences = compare_with_onnxruntime(model, path, images, reference="expert", gate="open")
        assert max(differences.values()) <= TOLERANCE, differences
    assert session.run(["score"], {"image": images.numpy()})[0].shape == (1,)


def test_forced_dynamo_exporter_raises_instead_of_falling_back(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--exporter", "dynamo", "--opset", "17"]
    assert main(args) == 2
    assert "opset 17 is below 18" in capsys.readouterr().err and not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_a_missing_export_extra_is_named_with_the_command_that_installs_it(monkeypatch):
    """Without the [export] extra, export and the ONNX Runtime backend say how to install it."""
    import sys

    from rdexpert.inference.export import optional_module

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed: import raises ModuleNotFoundError
    with pytest.raises(RuntimeError, match=r'pip install "rdexpert\[export\]"'):
        optional_module("onnx")


def test_an_impossible_opset_is_one_line_before_any_exporter_runs(tiny_checkpoint, tmp_path, capfd):
    from rdexpert.checkpoint.pretrained import Checkpoint

    model = Checkpoint.from_pretrained(tiny_checkpoint).model
    with pytest.raises(ValueError, match=r"opset 999 is not one this ONNX .* writes: choose 11 to \d+"):
        export_onnx(model, tmp_path / "x.onnx", opset=999)
    assert "Traceback" not in capfd.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_the_metadata_says_how_to_prepare_the_input(onnx_file):
    text = onnx_metadata(onnx_file)["input"]
    assert f"S = {SIZE}" in text and "PIL" in text and "[0, 1]" in text
