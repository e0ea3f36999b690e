"""How far a training-mode BatchNorm teacher is from the frozen expert before any weight update.

    python bench/bn_gap.py

The teacher starts as a copy of the expert; the only difference is BatchNorm normalising with the
batch's own statistics (train mode) instead of ImageNet's running statistics (eval mode). Prints
1 - cos per scale on normal training images, batches of 4, for metal_plate and the derived categories
of bench/robustness_data.py; writes bench/results/bn_gap.md.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line  # noqa: E402
from robustness_data import SHARED, build_dtd, build_metal  # noqa: E402

from rdexpert.data import image_to_tensor, list_samples, load_image, resize_image  # noqa: E402
from rdexpert.model.backbones import create_backbone  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    expert = create_backbone("tf_efficientnet_lite0").eval()
    rows = [("metal_plate", str(SHARED / "mpdd"), "metal_plate")]
    rows += [(c, str(build_metal(c)), "plate") for c in ("dark", "grey", "nonsquare")]
    rows += [(n, str(build_dtd(*n.split("_")[1:])), n) for n in ("dtd_banded_cracked", "dtd_bubbly_cracked")]
    lines = ["| data | scale 1/4 | scale 1/8 | scale 1/16 |", "|---|---|---|---|"]
    for name, root, category in rows:
        samples = [s for s in list_samples(root, category, "train") if s.label == 0][:8]
        x = torch.stack([image_to_tensor(resize_image(load_image(s.path), 256)) for s in samples])
        gaps = []
        with torch.no_grad():
            reference = expert(x)
            for start in range(0, len(x), 4):
                teacher = copy.deepcopy(expert).train()  # the teacher at step 0, in training mode
                features = teacher(x[start:start + 4])
                gaps.append([float((1 - torch.nn.functional.cosine_similarity(t, e[start:start + 4], dim=1)).mean())
                             for t, e in zip(features, reference)])
        lines.append(f"| {name} | " + " | ".join(f"{g:.3f}" for g in np.mean(gaps, 0)) + " |")
    text = "\n".join(["# Training-mode BatchNorm teacher vs frozen expert at step 0", "",
                      f"Machine: {machine_line()}.", "Command: `python bench/bn_gap.py`", "", *lines]) + "\n"
    print(text)
    (HERE / "results" / "bn_gap.md").write_text(text)


if __name__ == "__main__":
    main()
