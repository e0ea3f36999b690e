"""Seconds per training iteration of one variant, for the `cpu` preset and the `paper` settings.

    python bench/train_speed.py                      # full variant, both presets, this machine
    python bench/train_speed.py --presets cpu --repeats 20

Times `rdexpert.training.loop.train_step` on synthetic batches (random pixels, a random
defect mask) so that only the network and the two optimisers are measured; the
data loader runs in worker processes during real training. Backbone weights are
random: the arithmetic is the same as with pretrained weights.
Results: bench/results/train_speed.{md,json}, with the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_info, machine_line  # noqa: E402

from rdexpert.checkpoint.io import write_json  # noqa: E402
from rdexpert.model import ExpertTeacherStudent, ModelConfig  # noqa: E402
from rdexpert.runtime import resolve_device  # noqa: E402
from rdexpert.training.loop import PRESETS, train_step  # noqa: E402
from rdexpert.training.recipe import get_recipe  # noqa: E402


def synthetic_batch(batch_size: int, size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch_size, 3, size, size, generator=g)
    mask = (torch.rand(batch_size, 1, size // 16, size // 16, generator=g) > 0.8).float()
    mask = torch.nn.functional.interpolate(mask, size=(size, size))
    return {"image": image, "augmented": image * (1 - mask) + 0.5 * mask, "mask": mask}


def seconds_per_iteration(preset: str, variant: str, device: torch.device, warmup: int, repeats: int,
                          precision: str = "fp32") -> tuple[float, float | None]:
    """(seconds per iteration, peak GPU memory in MiB or None on the CPU) of the `improved` recipe's step."""
    recipe = get_recipe("improved", {"precision": precision})
    settings = PRESETS[preset]
    model = ExpertTeacherStudent(
        ModelConfig(backbone=settings["backbone"], variant=variant, image_size=settings["image_size"]), pretrained=False
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model.train()
    student = torch.optim.Adam(model.student_parameters(), lr=0.005, betas=(0.5, 0.999))
    teacher = None
    if model.trained_teacher is not None:
        teacher = torch.optim.Adam(model.trained_teacher.parameters(), lr=1e-4, betas=(0.5, 0.999))
    batch = synthetic_batch(settings["batch_size"], settings["image_size"], device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        train_step(model, batch, teacher, student, device, recipe=recipe)
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        train_step(model, batch, teacher, student, device, recipe=recipe)
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return (time.perf_counter() - began) / repeats, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"], choices=sorted(PRESETS))
    parser.add_argument("--variants", nargs="+", default=["full"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paper-repeats", type=int, default=2, help="repeats for the paper preset (slow on CPU)")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="bf16: autocast, CUDA only")
    args = parser.parse_args()
    device = resolve_device(args.device)

    rows = []
    for preset in args.presets:
        for variant, precision in ((v, p) for v in args.variants for p in args.precisions):
            repeats = args.paper_repeats if preset == "paper" and device.type == "cpu" else args.repeats
            warmup = 1 if preset == "paper" and device.type == "cpu" else args.warmup
            seconds, peak = seconds_per_iteration(preset, variant, device, warmup, repeats, precision)
            s = PRESETS[preset]
            rows.append({"preset": preset, "variant": variant, "device": str(device), "backbone": s["backbone"],
                         "image_size": s["image_size"], "batch_size": s["batch_size"], "repeats": repeats,
                         "precision": precision, "peak_gpu_mib": peak, "seconds_per_iteration": seconds,
                         "minutes_for_preset": seconds * s["iterations"] / 60, "iterations": s["iterations"]})
            print(rows[-1], flush=True)

    lines = [
        "# Training speed",
        "",
        f"Machine: {machine_line()}.",
        f"Command: `python bench/train_speed.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "| preset | variant | device | precision | backbone | px | batch | s/iteration | minutes for the preset's "
        "iterations | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = "—" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
        lines.append(f"| {r['preset']} | {r['variant']} | {r['device']} | {r['precision']} | {r['backbone']} | "
                     f"{r['image_size']} | {r['batch_size']} | {r['seconds_per_iteration']:.2f} | "
                     f"{r['minutes_for_preset']:.0f} ({r['iterations']} it) | {peak} |")
    if len(rows) >= 2:
        lines.append("")
        lines.append(f"Ratio {rows[-1]['preset']}/{rows[0]['preset']}: "
                     f"{rows[-1]['seconds_per_iteration'] / rows[0]['seconds_per_iteration']:.1f}x per iteration.")
    table = "\n".join(lines) + "\n"
    print(table)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (HERE / "results" / f"train_speed{suffix}.md").write_text(table)
    write_json(HERE / "results" / f"train_speed{suffix}.json", {"machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
