"""End to end on real images: the `rdexpert` command trains on metal_plate and beats chance clearly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def rdexpert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdexpert.cli", *args], capture_output=True, text=True, timeout=900)


def test_train_then_test_on_real_metal_plate(tmp_path, mpdd_root, dtd_root):
    run = tmp_path / "run"
    trained = rdexpert("train", "--data-root", str(mpdd_root), "--category", "metal_plate", "--variant", "full",
                       "--iterations", "60", "--image-size", "128", "--batch-size", "4",
                       "--textures", str(dtd_root), "--out", str(run), "--device", "cpu")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (run / "model.safetensors").is_file() and (run / "loss.png").is_file()
    history = json.loads((run / "loss_history.json").read_text())
    assert len(history["student"]) == 60
    assert sum(history["student"][-10:]) < sum(history["student"][:10])  # it learned something

    tested = rdexpert("test", "--checkpoint", str(run), "--data-root", str(mpdd_root), "--category", "metal_plate",
                      "--out", str(tmp_path / "test"))
    assert tested.returncode == 0, tested.stderr[-2000:]
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert {"image_auroc", "pixel_auroc", "aupro", "image_ap", "pixel_ap", "f1_max"} <= set(metrics)
    assert all(0 <= metrics[k] <= 1 for k in ("image_auroc", "pixel_auroc", "aupro", "image_ap", "pixel_ap", "f1_max"))
    assert metrics["image_auroc"] > 0.75, metrics
    assert metrics["pixel_auroc"] > 0.85, metrics
    assert "| full (metal_plate) |" in (tmp_path / "test" / "metrics.md").read_text()
    assert list((tmp_path / "test" / "overlays").glob("defect_*.png"))
