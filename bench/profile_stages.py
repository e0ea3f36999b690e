"""Where a forward's time goes: milliseconds per image in each stage, before and after prepare_for_inference.

    python bench/profile_stages.py                      # 256 px, batch 1 and 16; Lite0 full, wide_resnet50_2 full and rd
    python bench/profile_stages.py --reps 5 --batches 1

Stages, timed one after the other on the CPU (each call returns when its work is done): the expert backbone
(run only for reference="expert" and by the Predictor's out-of-distribution check; in ``rd`` the teacher *is*
the expert), the teacher backbone, the OCBE, the decoder's own stages, GII (timed by hooks inside the decoder
and taken out of it), the anomaly maps (cosine distance, upsampling, sum), the blur and the score.
"total" is the sum without the expert: one ``model(images)`` with the default reference.
Each model runs "before" (as built, 2-D convolution blur: the code path before the change, see
bench/latency.py) and "after" (as the Predictor runs it), round-robin, median of the repetitions.
Random weights. Also counts each model's arithmetic per image (torch's FlopCounterMode, multiply-adds),
beside anomalib's ReverseDistillation when it is installed. Results: bench/results/profile.{md,json}, with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from latency import PEER, anomalib_rd, before_blur, build  # noqa: E402
from machine import machine_line, save_results  # noqa: E402

from rdexpert.model import anomaly_map  # noqa: E402
from rdexpert.model.gii import GuidedInjection  # noqa: E402

STAGES = ("expert", "teacher", "ocbe", "decoder", "gii", "maps", "blur", "score")
CASES = (("tf_efficientnet_lite0", "full"), ("wide_resnet50_2", "full"), ("wide_resnet50_2", "rd"))


def stage_seconds(model, images: torch.Tensor) -> dict[str, float]:
    """One forward, stage by stage, as ``model(images)`` runs it (default reference, gated GII, in the same chunks)."""
    seconds = dict.fromkeys(STAGES, 0.0)
    for part in model.batch_parts(images):
        for stage, spent in _part_seconds(model, part).items():
            seconds[stage] += spent
    return seconds


def _part_seconds(model, images: torch.Tensor) -> dict[str, float]:
    seconds = dict.fromkeys(STAGES, 0.0)

    def timed(stage, function, *args):
        began = time.perf_counter()
        result = function(*args)
        seconds[stage] += time.perf_counter() - began
        return result

    entered = {}

    def enter(module, args):
        entered[module] = time.perf_counter()

    def leave(module, args, output):
        seconds["gii"] += time.perf_counter() - entered.pop(module)

    gii = [m for m in model.modules() if isinstance(m, GuidedInjection)]
    handles = [m.register_forward_pre_hook(enter) for m in gii] + [m.register_forward_hook(leave) for m in gii]
    try:
        if model.trained_teacher is not None:
            timed("expert", model.expert, images)
        features = timed("teacher", model.teacher, images)
        embedding = timed("ocbe", model.ocbe, features)
        student = timed("decoder", model.decoder, embedding, features, "gated")
    finally:
        for handle in handles:
            handle.remove()
    seconds["decoder"] -= seconds["gii"]
    c = model.config
    fused = timed("maps", lambda: torch.stack(anomaly_map.scale_maps(student, features, images.shape[-2:],
                                                                      c.map_align_corners)).sum(0))
    # looked up when called, so the "before" run's patched blur is the one timed
    fused = timed("blur", lambda: anomaly_map.gaussian_blur(fused, c.blur_sigma, c.blur_border))
    timed("score", anomaly_map.map_scores, fused)
    return seconds


def profile(backbone: str, variant: str, batch: int, size: int, reps: int) -> dict[str, dict[str, float]]:
    """Median ms per image of each stage, for the "before" and "after" models, round-robin after a warm-up."""
    models = {"before": build(backbone, variant, size, optimised=False), "after": build(backbone, variant, size)}
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    samples = {key: [] for key in models}
    with torch.inference_mode():
        for repetition in range(reps + 1):
            for key, model in models.items():
                with before_blur() if key == "before" else contextlib.nullcontext():
                    result = stage_seconds(model, images)
                if repetition:  # the first round is the warm-up
                    samples[key].append(result)
    return {key: {stage: 1000 * statistics.median(r[stage] for r in results) / batch for stage in STAGES}
            for key, results in samples.items()}


def gmacs(model, size: int) -> float:
    """Multiply-adds (GMAC) of one forward of one image."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / 2e9


def arithmetic(cases, size: int) -> list[dict]:
    """GMAC per image of each case as the Predictor runs it, and of the peer for each ResNet backbone."""
    rows = [{"backbone": b, "model": f"rdexpert {v}", "gmac": gmacs(build(b, v, size), size)} for b, v in cases]
    for backbone in dict.fromkeys(b for b, _ in cases):
        built, _ = anomalib_rd(backbone, size)
        if built is not None:
            rows.append({"backbone": backbone, "model": PEER, "gmac": gmacs(built[0], size)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per cell")
    parser.add_argument("--reps-large", type=int, default=2, help="repetitions for wide_resnet50_2 at batch > 1")
    parser.add_argument("--cases", nargs="+", default=[f"{b}:{v}" for b, v in CASES], help="backbone:variant ...")
    args = parser.parse_args()
    load_before = os.getloadavg()
    began = time.perf_counter()
    rows = []
    cases = [tuple(case.split(":")) for case in args.cases]
    for backbone, variant in cases:
        for batch in args.batches:
            reps = args.reps_large if backbone == "wide_resnet50_2" and batch > 1 else args.reps
            for path, stages in profile(backbone, variant, batch, args.image_size, reps).items():
                total = sum(ms for stage, ms in stages.items() if stage != "expert")
                rows.append({"backbone": backbone, "variant": variant, "batch": batch, "path": path, "reps": reps,
                             **{f"{stage}_ms": ms for stage, ms in stages.items()}, "total_ms": total})
                print(rows[-1], flush=True)
    work = arithmetic(cases, args.image_size)
    minutes = (time.perf_counter() - began) / 60

    def cell(row, stage):
        ms = row[f"{stage}_ms"]
        return "-" if stage == "expert" and row["variant"] == "rd" else f"{ms:.1f}"

    lines = [
        f"# Forward time by stage, {args.image_size} px, ms per image",
        "",
        f"Machine: {machine_line()}; {torch.get_num_threads()} torch threads; load average before the run "
        f"{load_before[0]:.2f} (other work shares these cores); the run took {minutes:.1f} min.",
        f"Command: `{' '.join(['python bench/profile_stages.py', *sys.argv[1:]])}`. Random weights; median of the timed "
        "repetitions after a warm-up, before and after round-robin. `before`: the model as built with the 2-D "
        "convolution blur (the code path before the change); `after`: as the Predictor runs it "
        "(`prepare_for_inference`: BatchNorm folded into the convolutions, channels-last; blur as two matrix "
        "products). `expert`: only for reference=expert and the Predictor's out-of-distribution check (in `rd` "
        "the teacher is the expert); `total` = the other stages, one `model(images)`.",
        "",
        "| backbone | variant | batch | path | " + " | ".join(STAGES) + " | total |",
        "|---|---|---|---|" + "---|" * (len(STAGES) + 1),
    ]
    lines += [f"| {r['backbone']} | {r['variant']} | {r['batch']} | {r['path']} | "
              + " | ".join(cell(r, s) for s in STAGES) + f" | {r['total_ms']:.1f} |" for r in rows]
    lines += ["", "Arithmetic per image (multiply-adds, torch's FlopCounterMode):", "", "| backbone | model | GMAC |",
              "|---|---|---|"] + [f"| {r['backbone']} | {r['model']} | {r['gmac']:.2f} |" for r in work]
    save_results("profile", "\n".join(lines) + "\n", image_size=args.image_size, load_average_before=load_before,
                 minutes=minutes, rows=rows, arithmetic=work)


if __name__ == "__main__":
    main()
