"""What dropping the backbone's unused stride-32 stages saves: checkpoint bytes and forward time, side by side.

    python bench/backbone_stages.py              # Lite0, full variant, 128 and 256 px, batch 1 and 8
    python bench/backbone_stages.py --reps 30

timm's EfficientNet feature class runs every block although RD reads features only up to stride 16
(rdexpert.model.backbones.drop_unused_stages). "with tail" puts the dropped blocks back (same weights for the
kept ones) on the expert and the teacher; both models are then prepared as the Predictor prepares them, and
timed interleaved in one run (the median of ``--reps`` forwards each). Random weights: timing does not depend
on them. Results: bench/results/backbone_stages.{md,json}, with the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402

from rdexpert.model import ExpertTeacherStudent, ModelConfig  # noqa: E402


def with_tail(model: ExpertTeacherStudent) -> ExpertTeacherStudent:
    """The same model with the dropped stages put back on its expert and teacher (they run, their output unused)."""
    for extractor in (model.expert, model.trained_teacher):
        if extractor is None or not extractor.dropped:
            continue
        whole = timm.create_model(extractor.info.name, pretrained=False, features_only=True, out_indices=(1, 2, 3))
        kept = len(extractor.body.blocks)
        extractor.body.blocks = nn.Sequential(*extractor.body.blocks, *whole.blocks[kept:])
    return model


def stored_bytes(model: ExpertTeacherStudent) -> int:
    return sum(v.numel() * v.element_size() for v in model.trainable_state_dict().values())


def median_ms(model, images: torch.Tensor, reps: int) -> list[float]:
    times = []
    with torch.inference_mode():
        model(images)  # warm-up
        for _ in range(reps):
            began = time.perf_counter()
            model(images)
            times.append(1000 * (time.perf_counter() - began))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    rows, results = [], []
    for size in args.sizes:
        config = ModelConfig(variant="full", image_size=size, backbone=args.backbone)
        torch.manual_seed(0)
        kept = ExpertTeacherStudent(config, pretrained=False).eval()
        tail = with_tail(ExpertTeacherStudent(config, pretrained=False).eval())
        tail.load_state_dict(kept.state_dict(), strict=False)
        sizes = stored_bytes(kept), stored_bytes(tail)
        kept, tail = kept.prepared_copy(), tail.prepared_copy()
        for batch in args.batches:
            images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
            with torch.inference_mode():
                assert torch.equal(kept(images).maps.fused, tail(images).maps.fused)
            a, b = [], []
            for _ in range(3):  # interleaved rounds: a load spike hits both
                a += median_ms(kept, images, args.reps // 3 or 1)
                b += median_ms(tail, images, args.reps // 3 or 1)
            ms_kept, ms_tail = statistics.median(a) / batch, statistics.median(b) / batch
            results.append({"size": size, "batch": batch, "ms_per_image_kept": ms_kept, "ms_per_image_tail": ms_tail,
                            "stored_mib_kept": sizes[0] / 2**20, "stored_mib_tail": sizes[1] / 2**20})
            rows.append(f"| {size} | {batch} | {ms_tail:.1f} | {ms_kept:.1f} | {ms_tail / ms_kept:.2f}x | "
                        f"{sizes[1] / 2**20:.1f} | {sizes[0] / 2**20:.1f} |")
    text = (f"# Backbone stages RD does not read\n\n`python bench/backbone_stages.py --reps {args.reps}` on "
            f"{machine_line()}. {args.backbone}, variant full, the model as the Predictor runs it; maps equal "
            "bit for bit.\n\n| px | batch | ms/image with tail | ms/image without | speed-up | checkpoint MiB with "
            "tail (float32) | without |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    save_results("backbone_stages", text, rows=results, reps=args.reps, backbone=args.backbone)


if __name__ == "__main__":
    main()
