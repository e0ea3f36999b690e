"""The `rdexpert` command line: predict and test on the tiny checkpoint trained in conftest.py, Hub references,
and clear errors from the real command (a subprocess)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CATEGORY, REPO, SHA, SIZE, put_in_cache
from PIL import Image

from rdexpert.checkpoint import CheckpointInfo, read_config
from rdexpert.cli import main
from rdexpert.inference import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(checkpoint, target)
    return target


def rdexpert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdexpert.cli", *args], capture_output=True, text=True, timeout=900)


def test_cli_predict_writes_csv_and_overlays(tiny_checkpoint, tiny_data, tmp_path):
    folder = tiny_data / CATEGORY / "test" / "defect"
    single = tiny_data / CATEGORY / "test" / "good" / "000.png"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), str(single),
                 "--out", str(tmp_path), "--device", "cpu", "--batch-size", "2"]) == 0
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [str(p) for p in sorted(folder.glob("*.png"))] + [str(single)]
    predictor = Predictor.from_pretrained(tiny_checkpoint, device="cpu")
    expected = predictor.predict(single)
    assert float(rows[-1]["score"]) == pytest.approx(expected.score, abs=1e-5)
    assert float(rows[-1]["normalized_score"]) == pytest.approx(expected.normalized_score, abs=1e-4)
    assert int(rows[-1]["label"]) == expected.label
    overlays = sorted(p.name for p in (tmp_path / "overlays").glob("*.png"))
    assert overlays == ["000.png", "000_1.png", "001.png"]  # the two 000.png inputs do not overwrite each other
    assert np.asarray(Image.open(tmp_path / "overlays" / "001.png")).shape == (SIZE, SIZE, 3)


def test_cli_test_saves_metrics_and_f1_threshold(tiny_checkpoint, tiny_data, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    args = ["test", "--checkpoint", str(folder), "--data-root", str(tiny_data), "--category", CATEGORY,
            "--out", str(tmp_path / "report"), "--device", "cpu"]
    assert main(args) == 0
    assert "metrics" not in read_config(folder)  # only when asked
    assert main(args + ["--save-metrics"]) == 0
    assert main(args + ["--save-metrics", "--gate", "open"]) == 0
    config = read_config(folder)
    reference = CheckpointInfo.from_config(config).default_reference  # chosen at training (rdexpert.health)
    assert set(config["metrics"]) == {f"{reference}/gated", f"{reference}/open"}
    row = config["metrics"][f"{reference}/gated"]
    assert row["images"] == 4 and row["defective"] == 2 and 0 <= row["image_auroc"] <= 1 and "aupro" in row
    assert config["calibration"]["f1_threshold"] == pytest.approx(row["f1_threshold"])
    predictor = Predictor.from_pretrained(folder, device="cpu", threshold="f1")
    assert predictor.threshold == pytest.approx(row["f1_threshold"])
    assert predictor.normalize(predictor.threshold) == pytest.approx(0.5)


def test_cli_test_and_predict_take_hub_references(tiny_checkpoint, tiny_data, hub_cache, tmp_path):
    put_in_cache(hub_cache, tiny_checkpoint)
    ref = f"{REPO}/{CATEGORY}@{SHA}"
    assert main(["predict", "--checkpoint", ref, "--input", str(tiny_data / CATEGORY / "test" / "good"),
                 "--out", str(tmp_path / "p"), "--device", "cpu", "--no-overlays"]) == 0
    assert (tmp_path / "p" / "predictions.csv").read_text().count("\n") == 3
    args = ["test", "--checkpoint", ref, "--data-root", str(tiny_data), "--category", CATEGORY,
            "--out", str(tmp_path / "t"), "--device", "cpu"]
    assert main(args + ["--save-metrics"]) == 2  # would write into the read-only cache: refused
    assert main(args) == 0 and (tmp_path / "t" / "metrics.json").is_file()


@pytest.mark.slow  # three runs of the real command (each imports torch); slow as in test_end_to_end.py
def test_cli_errors_are_clear(tmp_path, mpdd_root):
    missing = rdexpert("train", "--data-root", str(tmp_path / "nowhere"), "--category", "x", "--out", str(tmp_path))
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr
    wrong = rdexpert("train", "--data-root", str(mpdd_root), "--category", "metal_plat", "--out", str(tmp_path))
    assert wrong.returncode == 2 and "metal_plate" in wrong.stderr
    no_checkpoint = rdexpert("test", "--checkpoint", str(tmp_path), "--data-root", str(mpdd_root),
                             "--category", "metal_plate", "--out", str(tmp_path / "t"))
    assert no_checkpoint.returncode == 2 and "config.json" in no_checkpoint.stderr
