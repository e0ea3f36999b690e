"""Where a trained teacher and its expert disagree: test images, the map against each reference, and the
teacher–expert distance at stride 4.

    python bench/teacher_drift_maps.py --checkpoint bench/runs/categories/quick/tire_full_s111 \
        --data-root ../shared/data/mvtec3d_rgb --category tire --out bench/results/teacher_drift_tire.png

Rows: two normal and two defective test images (the first of each, in listing order). Columns: the image,
the anomaly map scored against the trained teacher, against the frozen expert, and 1 - cos(T_1, E_1) per
pixel on the image itself. Each map has its own colour scale (what matters is where it is high).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--category", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F

    from rdexpert.checkpoint.folder import load_checkpoint
    from rdexpert.data import fit_image, list_samples, load_image
    from rdexpert.model.anomaly_map import pixel_cosine_distance

    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    if model.trained_teacher is None:
        sys.exit("this checkpoint has no trained teacher: nothing to compare")
    size, fit = model.config.image_size, model.config.input_fit
    test = list_samples(args.data_root, args.category, "test")
    picked = [s for s in test if not s.label][:2] + [s for s in test if s.label][:2]
    x = torch.stack([torch.from_numpy(fit_image(load_image(s.path), size, fit)).permute(2, 0, 1).float() / 255
                     for s in picked])
    with torch.no_grad():
        maps = {ref: model(x, reference=ref).maps.fused.reshape(len(x), size, size) for ref in ("teacher", "expert")}
        distance = pixel_cosine_distance(model.teacher(x)[0], model.expert(x)[0])[:, None]
        maps["teacher–expert distance"] = F.interpolate(distance, size=(size, size), mode="nearest")[:, 0]
    columns = ["image", "map vs teacher", "map vs expert", "teacher–expert distance"]
    fig, axes = plt.subplots(len(picked), 4, figsize=(10, 2.6 * len(picked)))
    for row, sample in enumerate(picked):
        panels = [x[row].permute(1, 2, 0).numpy(), maps["teacher"][row], maps["expert"][row],
                  maps["teacher–expert distance"][row]]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap=None if col == 0 else "jet")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=10)
        axes[row, 0].set_ylabel(f"{'defective' if sample.label else 'normal'}\n{Path(sample.path).name}", fontsize=8)
    fig.suptitle(f"{args.category}: {Path(args.checkpoint).name}", fontsize=11)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
