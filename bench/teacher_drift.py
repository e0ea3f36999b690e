"""Issue 13 diagnosis: train `full` with the health check logged, under one condition, then test it.

    python bench/teacher_drift.py --condition plain --textures none --teacher-bn train --iterations 300

Logs, every --check-every iterations, the health check of rdexpert.health plus the
train-mode (batch-statistics) teacher/expert agreement, so eval-mode drift can be told
apart from drift of the weights. Writes bench/runs/drift/<name>/{health.json, metrics.json}.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from robustness_data import SHARED, build_dtd, build_metal  # noqa: E402

from rdexpert.data import load_image, resize_image  # noqa: E402
from rdexpert.health import HealthSet, check_health  # noqa: E402
from rdexpert.model import ExpertTeacherStudent  # noqa: E402
from rdexpert.synthesis import AnomalySynthesizer  # noqa: E402
from rdexpert.train import TrainConfig, Trainer, train_step  # noqa: E402


def freeze_bn_statistics(teacher: nn.Module) -> None:
    """Keep BatchNorm layers on their (expert's) running statistics while the rest trains."""
    plain_train = teacher.train

    def train(mode: bool = True):
        plain_train(mode)
        for m in teacher.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return teacher

    teacher.train = train


@torch.no_grad()
def train_mode_agreement(model, images: torch.Tensor) -> float:
    teacher = copy.deepcopy(model.teacher).train()
    t, e = teacher(images), model.expert(images)
    return float(torch.stack([(1 - nn.functional.cosine_similarity(a, b, dim=1)).mean() for a, b in zip(t, e)]).mean())


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--condition", default="plain")
    p.add_argument("--textures", default="none", help="none (procedural), dtd, or a folder")
    p.add_argument("--foreground", default=None)
    p.add_argument("--teacher-bn", default="train", choices=["train", "frozen"])
    p.add_argument("--teacher-lr", type=float, default=1e-4)
    p.add_argument("--variant", default="full")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--check-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=111)
    p.add_argument("--name", default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.condition.startswith("dtd_"):
        _, normal, other = a.condition.split("_")
        root, category = build_dtd(normal, other), a.condition
    else:
        root, category = build_metal(a.condition), "plate"
    textures = {"none": None, "dtd": str(SHARED / "dtd" / "images")}.get(a.textures, a.textures)
    name = a.name or f"{a.condition}_{a.textures}_{a.teacher_bn}_lr{a.teacher_lr:g}_{a.variant}_s{a.seed}"
    out = ROOT / "bench" / "runs" / "drift" / name
    cfg = TrainConfig(data_root=str(root), category=category, out=str(out), variant=a.variant, preset="cpu",
                      iterations=a.iterations, image_size=a.image_size, textures=textures, foreground=a.foreground,
                      teacher_lr=a.teacher_lr, seed=a.seed, num_workers=0)
    trainer = Trainer(cfg, progress=False)
    torch.manual_seed(cfg.seed)
    dataset, holdout, fg = trainer._datasets()
    model = ExpertTeacherStudent(cfg.model_config())
    if a.teacher_bn == "frozen" and model.trained_teacher is not None:
        freeze_bn_statistics(model.trained_teacher)
    s_opt = torch.optim.Adam(model.student_parameters(), lr=cfg.student_lr, betas=cfg.betas)
    t_opt = torch.optim.Adam(model.trained_teacher.parameters(), lr=cfg.teacher_lr, betas=cfg.betas) if model.trained_teacher is not None else None
    synth = AnomalySynthesizer(textures=textures, foreground=fg)
    images = [resize_image(load_image(s.path), cfg.image_size) for s in holdout]
    hset = HealthSet.build(images, synth, draws=4)
    device = torch.device("cpu")
    log = []
    model.train()
    batches = trainer._batches(dataset, 0)
    began = time.perf_counter()
    for it in range(1, cfg.iterations + 1):
        _, batch = next(batches)
        losses = train_step(model, batch, t_opt, s_opt, device)
        if it % 10 == 0:
            print(f"it {it} {time.perf_counter() - began:.0f}s {losses}", flush=True)
        if it % a.check_every == 0 or it == cfg.iterations:
            h = check_health(model, hset, device)
            h["agreement_train_mode"] = train_mode_agreement(model, hset.clean)
            h.update(iteration=it, seconds=round(time.perf_counter() - began, 1), **losses)
            log.append(h)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}), flush=True)
    model.eval()
    from rdexpert.evaluate import evaluate_split

    metrics = {}
    for ref in ("teacher", "expert"):
        r = evaluate_split(model, str(root), category, device="cpu", reference=ref)
        metrics[ref] = {k: r.metrics[k] for k in ("image_auroc", "pixel_auroc", "aupro", "pixel_ap")}
    print(json.dumps({"name": name, "foreground": fg, "metrics": metrics}), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "health.json").write_text(json.dumps(log, indent=1))
    (out / "metrics.json").write_text(json.dumps({"args": vars(a), "foreground": fg, "metrics": metrics}, indent=1))


if __name__ == "__main__":
    main()
