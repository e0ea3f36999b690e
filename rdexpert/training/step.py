"""One step of RD with Expert's two-step recipe, and how a run's model starts (docs/design.md §3.2).

Why apart from the loop: a step is the method (teacher loss, then student loss on clean and synthetic
images); the loop around it (rdexpert.training.loop) is bookkeeping: data, resume, health checks, saving.
"""

from __future__ import annotations

import math

import torch
from torch.nn.parallel import DistributedDataParallel

from rdexpert.model import ExpertTeacherStudent
from rdexpert.runtime import autocast
from rdexpert.training import distributed
from rdexpert.training.losses import student_loss, teacher_loss
from rdexpert.training.recipe import DEFAULT_RECIPE, Recipe, get_recipe


def _split(features: list[torch.Tensor], n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [f[:n] for f in features], [f[n:] for f in features]


def initialise_student(model: ExpertTeacherStudent, scheme: str) -> None:
    """``"xavier_normal"``: the released code's init of every student ``Conv2d`` (and ``Linear``) weight;
    its transposed convolutions keep PyTorch's default there too. ``"default"``: leave PyTorch's init."""
    if scheme != "xavier_normal":
        return
    for module in [*model.ocbe.modules(), *model.decoder.modules()]:
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.xavier_normal_(module.weight)


def warm_start(model: ExpertTeacherStudent, source: str) -> dict:
    """Start from a trained checkpoint's teacher and student (same backbone), not from the expert and a fresh student.

    Every trainable tensor whose name and shape both models share is copied (an `rd` source has no
    trained teacher: the teacher then starts from the expert as usual). Returns what was copied.
    """
    from rdexpert.checkpoint.pretrained import Checkpoint  # local folders, Hub refs, fp16

    checkpoint = Checkpoint.from_pretrained(source, pretrained_expert=False)
    trained, config = checkpoint.model, checkpoint.config
    if trained.config.backbone != model.config.backbone:
        raise ValueError(f"warm start from {source}: its backbone is {trained.config.backbone}, this run's "
                         f"{model.config.backbone}; warm starts need the same backbone")
    ours = model.trainable_state_dict()
    theirs = {k: v for k, v in trained.trainable_state_dict().items() if k in ours and v.shape == ours[k].shape}
    if not any(k.startswith(("ocbe.", "decoder.")) for k in theirs):
        raise ValueError(f"warm start from {source}: no student weights fit this {model.config.variant} model")
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in theirs.items()}, strict=False)
    return {"source": str(source), "variant": trained.config.variant, "tensors": len(theirs), "of": len(ours),
            "weights_sha256": config.get("weights_sha256")}


def scheduled_iterations(iterations: int, images: int, batch_size: int, schedule: str) -> int:
    """``"epochs"`` (the released code): whole epochs, the last partial batch kept, until ``iterations`` is
    reached, so the count rounds up to a whole epoch; ``"iterations"``: exactly ``iterations``."""
    if schedule != "epochs":
        return iterations
    per_epoch = math.ceil(images / min(batch_size, images))
    return math.ceil(iterations / per_epoch) * per_epoch


def teacher_train_mode(teacher: torch.nn.Module, teacher_bn: str = "batch") -> torch.nn.Module:
    """Put the teacher in training mode; with ``teacher_bn="frozen"`` its BatchNorm layers stay in eval
    mode, so they normalise with (and keep) the expert's running statistics."""
    teacher.train()
    if teacher_bn == "frozen":
        for module in teacher.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    return teacher


def train_step(
    model: ExpertTeacherStudent,
    batch: dict,
    teacher_optimizer: torch.optim.Optimizer | None,
    student_optimizer: torch.optim.Optimizer,
    device: torch.device,
    teacher_bn: str = "batch",
    recipe: Recipe | None = None,
    parallel: "ParallelParts | None" = None,
) -> dict[str, float]:
    """One iteration of the two-step loop; returns the losses as floats.

    ``recipe`` (default ``improved``) decides the teacher-loss mask resize, the student's BatchNorm
    passes and the precision. ``parallel`` holds the DDP-wrapped teacher and student of a
    ``--distributed ddp`` run (their gradients are averaged over the ranks)."""
    recipe = recipe or get_recipe(DEFAULT_RECIPE)
    student_net = parallel.student if parallel is not None else model.student
    precision = recipe.precision
    variant = model.variant
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    dtype = next(model.ocbe.parameters()).dtype  # float32, or float64 for an exact check (tests/ddp_steps.py)
    x = batch["image"].to(device, dtype, non_blocking=True).contiguous(memory_format=memory)
    n = x.shape[0]
    use_augmented = variant.augmented_student or variant.train_teacher
    losses: dict[str, float] = {}
    with torch.no_grad(), autocast(device, precision):
        if use_augmented:
            x_aug = batch["augmented"].to(device, dtype, non_blocking=True).contiguous(memory_format=memory)
            expert_clean, expert_aug = _split(model.expert(torch.cat([x, x_aug])), n)
        else:
            expert_clean = model.expert(x)

    if variant.train_teacher:  # step 1: teacher against the frozen expert
        teacher = teacher_train_mode(parallel.teacher if parallel is not None else model.trained_teacher, teacher_bn)
        mask = batch["mask"].to(device, dtype, non_blocking=True)
        with autocast(device, precision):
            loss_t = teacher_loss(teacher(x), teacher(x_aug), expert_clean, expert_aug, mask, recipe.mask_resize)
        teacher_optimizer.zero_grad(set_to_none=True)
        loss_t.backward()
        teacher_optimizer.step()
        teacher.eval()
        losses["teacher"] = loss_t.item()
        with torch.no_grad(), autocast(device, precision):
            teacher_clean, teacher_aug = _split(teacher(torch.cat([x, x_aug])), n)
    else:  # the teacher is the frozen expert
        teacher_clean = expert_clean
        teacher_aug = expert_aug if variant.augmented_student else None

    # step 2: student from teacher features (clean, and defective when the variant says so). Two passes
    # (the released code) update the student's BatchNorm statistics once per batch; one concatenated pass
    # normalises clean and defective features together
    with autocast(device, precision):
        if not variant.augmented_student:
            students = [student_net(teacher_clean)]
        elif recipe.student_bn_passes == 2:
            students = [student_net(teacher_clean), student_net(teacher_aug)]
        else:
            students = list(_split(student_net([torch.cat([c, a]) for c, a in zip(teacher_clean, teacher_aug)]), n))
        targets = [teacher_clean] + ([expert_clean] if variant.expert_targets else [])
        loss_s = student_loss(students, targets)
    student_optimizer.zero_grad(set_to_none=True)
    loss_s.backward()
    student_optimizer.step()
    losses["student"] = loss_s.item()
    return distributed.mean_over_ranks(losses) if parallel is not None else losses


class StudentNet(torch.nn.Module):
    """The student (bottleneck + decoder) as one module, the unit DistributedDataParallel wraps."""

    def __init__(self, model: ExpertTeacherStudent):
        super().__init__()
        self.ocbe, self.decoder = model.ocbe, model.decoder

    def forward(self, teacher_features: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.decoder(self.ocbe(teacher_features), teacher_features)


class ParallelParts:
    """Teacher and student of one model, with BatchNorm over the global batch, wrapped for DDP."""

    def __init__(self, model: ExpertTeacherStudent, device: torch.device):
        ids = [device.index] if device.type == "cuda" else None

        def wrap(module: torch.nn.Module) -> DistributedDataParallel:
            # BatchNorm statistics are synchronised, so every rank's buffers stay equal without broadcasting;
            # timm's feature extractors keep stages past the last feature map, whose weights get no gradient
            return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False,
                                           find_unused_parameters=True)

        distributed.synchronise_batchnorm(model.ocbe)
        distributed.synchronise_batchnorm(model.decoder)
        self.student = wrap(StudentNet(model))
        self.teacher = None
        if model.trained_teacher is not None:
            model.trained_teacher = distributed.synchronise_batchnorm(model.trained_teacher)
            self.teacher = wrap(model.trained_teacher)
