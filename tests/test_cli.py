"""The `rdexpert` command line: predict and test on the tiny checkpoint trained in conftest.py, Hub addresses,
and clear errors from the real command (a subprocess)."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import CATEGORY, REPO, SHA, SIZE, put_in_cache
from PIL import Image

from rdexpert.checkpoint.folder import CheckpointInfo, read_config
from rdexpert.cli import main
from rdexpert.inference.predictor import Predictor

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
    # the tiny images are 72 x 88 and the checkpoint pads to a square: the overlay keeps their shape at model scale
    assert np.asarray(Image.open(tmp_path / "overlays" / "001.png")).shape == (round(SIZE * 72 / 88), SIZE, 3)


def test_cli_test_saves_metrics_and_f1_threshold(tiny_checkpoint, tiny_data, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    args = ["test", "--checkpoint", str(folder), "--data-root", str(tiny_data), "--category", CATEGORY,
            "--out", str(tmp_path / "report"), "--device", "cpu"]
    assert main(args) == 0
    assert "metrics" not in read_config(folder)  # only when asked
    from rdexpert.evaluation.evaluate import read_report_scores

    stored = read_report_scores(tmp_path / "report")  # every image's score, for places without the data
    assert len(stored) == 4 and sorted(label for _, label, _ in stored) == [0, 0, 1, 1]
    assert main(args + ["--save-metrics"]) == 0
    assert main(args + ["--save-metrics", "--gate", "open"]) == 0
    config = read_config(folder)
    reference = CheckpointInfo.from_config(config).default_reference  # chosen at training (rdexpert.training.health)
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


# -- output folders that cannot be written, checked before any compute ------------------------------
def test_unwritable_out_is_refused_in_one_line_before_any_compute(tiny_checkpoint, mpdd_root, tmp_path, capsys,
                                                                   monkeypatch):
    """A path inside a regular file cannot be a folder, for root too (chmod does not stop root)."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    bad = blocker / "out"
    images = mpdd_root / "metal_plate" / "test" / "good"
    commands = {
        "train": ["train", "--data-root", str(mpdd_root), "--category", "metal_plate", "--out", str(bad),
                  "--iterations", "1", "--image-size", "64", "--batch-size", "1", "--random-weights"],
        "test": ["test", "--checkpoint", str(tiny_checkpoint), "--data-root", str(mpdd_root), "--category",
                 "metal_plate", "--out", str(bad)],
        "predict": ["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(images), "--out", str(bad)],
        "export": ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(bad / "model.onnx")],
    }
    for command, args in commands.items():
        began = time.perf_counter()
        assert main(args + ["--device", "cpu"] * (command != "export")) == 2, command
        seconds = time.perf_counter() - began
        err = capsys.readouterr().err
        assert seconds < 5, (command, seconds)  # no model loaded, no image scored
        assert err.count("\n") == 1 and err.startswith(f"rdexpert {command}: error: cannot write to the output folder")
        assert str(bad) in err and "Not a directory" in err and "Traceback" not in err
        assert blocker.read_text() == "keep me"
    monkeypatch.setenv("RDEXPERT_DEBUG", "1")
    assert main(commands["predict"]) == 2
    assert "Traceback" in capsys.readouterr().err


# -- predict: subfolders, unreadable files, names that are not UTF-8 ----------------------------------
def _read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_cli_predict_recurses_into_subfolders(tiny_checkpoint, mpdd_root, tmp_path, capsys):
    test = mpdd_root / "metal_plate" / "test"
    folder = tmp_path / "in"
    for sub, name in [("good", "test_00000.png"), ("defect", "test_00026.png"), ("defect/deeper", "test_00027.png")]:
        (folder / sub).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(test / sub.split("/")[0] / name, folder / sub / name)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), "--out", str(out),
                 "--device", "cpu"]) == 0
    files = [row["file"] for row in _read_csv(out / "predictions.csv")]
    assert files == [str(folder / "defect" / "deeper" / "test_00027.png"), str(folder / "defect" / "test_00026.png"),
                     str(folder / "good" / "test_00000.png")]
    overlays = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))
    assert overlays == ["defect/deeper/test_00027.png", "defect/test_00026.png", "good/test_00000.png"]
    # predicting into the input folder again does not score the previous run's overlays
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), "--out", str(folder),
                 "--device", "cpu"]) == 0
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), "--out", str(folder),
                 "--device", "cpu"]) == 0
    assert len(_read_csv(folder / "predictions.csv")) == 3
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(tmp_path / "nowhere"),
                 "--out", str(out), "--device", "cpu"]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_cli_predict_skips_corrupt_files_and_keeps_the_good_rows(tiny_checkpoint, mpdd_root, tmp_path, capsys):
    good = mpdd_root / "metal_plate" / "test" / "good"
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("test_00000.png", "test_00001.png", "test_00002.png"):
        shutil.copyfile(good / name, folder / name)
    (folder / "test_00001b.png").write_bytes((good / "test_00001.png").read_bytes()[:400])  # truncated
    (folder / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), "--out", str(out),
                 "--device", "cpu", "--batch-size", "2"]) == 0
    assert [Path(r["file"]).name for r in _read_csv(out / "predictions.csv")] == [
        "test_00000.png", "test_00001.png", "test_00002.png"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert err[0].startswith("rdexpert predict: warning: skipped ") and "notes.jpg" in err[0]
    assert "test_00001b.png" in err[1] and "truncated" in err[1]
    assert err[2] == f"rdexpert predict: warning: scored 3, skipped 2 unreadable: {folder / 'notes.jpg'}, " \
                     f"{folder / 'test_00001b.png'}"
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    shutil.copyfile(folder / "notes.jpg", only_bad / "notes.jpg")
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(only_bad), "--out", str(out),
                 "--device", "cpu"]) == 2
    assert "none of the 1 input images could be read" in capsys.readouterr().err
    assert len(_read_csv(out / "predictions.csv")) == 3  # the earlier results are not overwritten


def test_cli_predict_writes_the_csv_for_a_file_name_that_is_not_utf8(tiny_checkpoint, mpdd_root, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    odd = folder / os.fsdecode(b"bad\xff.png")  # a Latin-1 name, say
    shutil.copyfile(mpdd_root / "metal_plate" / "test" / "good" / "test_00000.png", odd)
    shutil.copyfile(mpdd_root / "metal_plate" / "test" / "good" / "test_00001.png", folder / "plain.png")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), "--out", str(out),
                 "--device", "cpu"]) == 0
    rows = _read_csv(out / "predictions.csv")  # valid UTF-8
    assert [r["file"] for r in rows] == [f"{folder}/bad\\xff.png", str(folder / "plain.png")]
    assert all(float(r["score"]) > 0 for r in rows)
    assert (out / "overlays" / os.fsdecode(b"bad\xff.png")).is_file()  # the overlay keeps the real name
    assert "2 images" in capsys.readouterr().out


# -- train on too few images ------------------------------------------------------------------------
def test_cli_train_on_one_image_warns_and_prints_a_runnable_next_command(mpdd_root, tmp_path, capsys):
    data = tmp_path / "one"
    data.mkdir()
    shutil.copyfile(mpdd_root / "metal_plate" / "train" / "good" / "train_00000.png", data / "train_00000.png")
    out = tmp_path / "checkpoint"
    assert main(["train", "--data-root", str(data), "--out", str(out), "--iterations", "1", "--image-size", "64",
                 "--batch-size", "1", "--random-weights", "--device", "cpu", "--foreground", "none",
                 "--health-every", "0"]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if line.startswith("rdexpert train: warning:")]
    assert len(warning) == 2 and "1 normal training image(s)" in warning[0] and "optimistic" in warning[0]
    assert "too few to fit the out-of-distribution check" in warning[1]  # one image: no spread to measure
    assert read_config(out)["calibration"]["source"].startswith("the training images themselves")
    assert "ood" not in read_config(out)
    (next_line,) = [line for line in captured.out.splitlines() if line.startswith("next: ")]
    command = shlex.split(next_line.removeprefix("next: "))
    assert "None" not in command and "--category" not in command
    assert command[:2] == ["rdexpert", "test"] and command[command.index("--data-root") + 1] == str(data)
    assert command[command.index("--checkpoint") + 1] == str(out)


def test_cli_calibrate_recomputes_the_threshold_from_held_out_normals_and_synthetic_anomalies(
        tiny_checkpoint, tiny_data, tmp_path, capsys):
    folder = _copy(tiny_checkpoint, tmp_path)
    stored = read_config(folder)["calibration"]
    assert stored["method"] == "normal images + synthetic anomalies"  # training already calibrates this way
    section = read_config(folder)
    section["calibration"] = {k: v for k, v in stored.items() if k not in ("synthetic_scores", "estimates", "method")}
    (folder / "config.json").write_text(__import__("json").dumps(section))  # as a checkpoint written before the rule
    assert main(["calibrate", "--checkpoint", str(folder), "--data-root", str(tiny_data), "--device", "cpu"]) == 0
    again = read_config(folder)["calibration"]
    # the same held-out split and fixed synthetic seed: the training-time calibration comes back
    assert again["threshold"] == pytest.approx(stored["threshold"], rel=1e-5)
    assert again["estimates"]["synthetic_anomalies"] >= 40 and again["estimates"]["normal_images"] >= 1
    assert "synthetic anomalies missed" in capsys.readouterr().out
    Predictor.from_pretrained(folder, device="cpu")  # the rewritten config still loads (weights hash kept)


def test_python_dash_m_rdexpert_is_the_command():
    """`python -m rdexpert` (what a torchrun user types first) runs the CLI."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "rdexpert", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "train" in done.stdout and "predict" in done.stdout
