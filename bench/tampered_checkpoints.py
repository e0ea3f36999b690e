"""The tampered-config.json table of the checkpoint-safety issue, rerun: each case through `rdexpert predict`.

    python bench/tampered_checkpoints.py

Each row copies the shipped checkpoints/metal_plate_rd_128px, changes one field of its config.json, and runs
``rdexpert predict`` on one test image in a fresh process: its exit status, how many lines it printed to
stderr, the first of them, and the process's peak memory (max RSS). A sound loader answers every row with
exit status 2 and one CheckpointError line, at the memory of a bare start (no model built). The untouched
checkpoint is the first row, for scale. Results: bench/results/tampered_checkpoints.{md,json}.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402

SOURCE = ROOT / "checkpoints" / "metal_plate_rd_128px"
IMAGE = ROOT.parent / "shared" / "data" / "mpdd" / "metal_plate" / "test" / "defect" / "test_00026.png"
CASES = [  # (section, field, value): the table, and the one it named as the model to follow
    (None, None, None),
    ("model", "ocbe_blocks", 100000),
    ("model", "decoder_blocks", 20000),
    ("model", "decoder_blocks", "3"),
    ("calibration", "threshold", [1, 2]),
    (None, "calibration", "x"),
    (None, "format", "2"),
    ("backbone", "mean", "x"),
    ("model", "image_size", 20000),
]
MEASURE = ("import resource, subprocess, sys; run = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "sys.stdout.write(run.stderr); print('@@', run.returncode, resource.getrusage(resource.RUSAGE_CHILDREN)"
           ".ru_maxrss)")


def tampered(folder: Path, section, key, value) -> None:
    config = json.loads((folder / "config.json").read_text())
    if key is not None:
        (config[section] if section else config)[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def main() -> None:
    rows, results = [], []
    for section, key, value in CASES:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "checkpoint"
            shutil.copytree(SOURCE, folder)
            tampered(folder, section, key, value)
            command = [sys.executable, "-m", "rdexpert", "predict", "--checkpoint", str(folder), "--input", str(IMAGE),
                       "--out", str(Path(scratch) / "out"), "--no-overlays"]
            out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True).stdout
        *errors, tail = out.rstrip("\n").split("\n")
        status, peak_kib = (int(v) for v in tail.split()[1:])
        lines = [line for line in errors if line.strip() and "Warning" not in line and "warn(" not in line]
        field = "untouched" if key is None else f"{section + '.' if section else ''}{key}: {json.dumps(value)}"
        first = lines[0].replace(scratch, "TMP") if lines else ""
        results.append({"field": field, "exit": status, "stderr_lines": len(lines), "first_line": first,
                        "peak_mib": peak_kib / 1024})
        shown = first if len(first) <= 150 else first[:147] + "..."
        rows.append(f"| `{field}` | {status} | {len(lines)} | {peak_kib / 1024:.0f} | {shown.replace('|', '/')} |")
    text = ("# Tampered config.json, through `rdexpert predict`\n\n`python bench/tampered_checkpoints.py` on "
            f"{machine_line()}.\n\n| field | exit | stderr lines | peak MiB | first stderr line |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    save_results("tampered_checkpoints", text, rows=results)


if __name__ == "__main__":
    main()
