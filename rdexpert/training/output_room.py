"""The room a training run needs on disk, estimated from its config before anything is computed.

Why: a disk that fills while training ends a long run with a low-level write error; checking the estimate first
turns that into one line before the first iteration.
"""

from __future__ import annotations

import torch

from rdexpert.inference.ood import MAX_COMPONENTS
from rdexpert.model import ExpertTeacherStudent
from rdexpert.training.config import TrainConfig

SAFETENSORS_ENTRY_BYTES = 160  # header bytes per tensor (name, dtype, shape, offsets), generously
OTHER_FILES_BYTES = 2 * 2**20  # config.json, loss.png, state.json, the probe ... (measured: well under 1 MiB)
HISTORY_BYTES_PER_ITERATION = 200  # loss_history.json (indented JSON) + the same history inside the resume state


def _learned_parameters(model: ExpertTeacherStudent, image_size: int) -> tuple[list, list]:
    """(teacher, student) parameters that get a gradient, hence Adam moments: found by one forward and backward
    on PyTorch's meta device (no memory, no compute). timm feature extractors keep stages past the last
    feature map whose weights never get one. Any failure: every trainable parameter (an upper bound)."""
    teacher = list(model.trained_teacher.parameters()) if model.trained_teacher is not None else []
    student = list(model.student_parameters())
    try:
        with torch.enable_grad():
            x = torch.empty(2, 3, image_size, image_size, device="meta")
            model.train()
            features = (model.trained_teacher or model.expert)(x)
            students = model.student([f.detach() for f in features])
            loss = sum(s.float().sum() for s in students)
            if model.trained_teacher is not None:
                loss = loss + sum(f.float().sum() for f in features)
            loss.backward()
        used = [p for p in teacher if p.grad is not None], [p for p in student if p.grad is not None]
        if used[1]:
            return used
    except Exception:  # an exotic backbone the meta device cannot run: count them all
        pass
    return teacher, student


def estimate_output_bytes(config: TrainConfig) -> dict[str, int]:
    """What a run of ``config`` writes into its output folder, in bytes, from its model config alone.

    The model is built on the meta device (shapes only, nothing allocated, no weights downloaded).
    ``resume_state``: trainable weights + the two Adam moments of every parameter that learns (+ headers, history);
    ``peak``: two resume states (a save's temporary file beside the previous state, which is kept until
    the new one is complete) or one state + the final weights + the out-of-distribution file, whichever is
    more, + the small files; ``final``: what stays after a finished run.
    """
    model_config = config.model_config()
    with torch.device("meta"):
        model = ExpertTeacherStudent(model_config, pretrained=False)
    weights = model.trainable_state_dict()
    weight_bytes = sum(v.numel() * v.element_size() for v in weights.values())
    weights_file = weight_bytes + SAFETENSORS_ENTRY_BYTES * len(weights)
    teacher, student = _learned_parameters(model, model_config.image_size)
    learned = teacher + student
    moments = sum(2 * p.numel() * p.element_size() + 4 for p in learned)  # exp_avg, exp_avg_sq, step (float32)
    history = HISTORY_BYTES_PER_ITERATION * config.iterations
    state = weights_file + moments + 3 * SAFETENSORS_ENTRY_BYTES * len(learned) + 64 * 1024 + history
    ood = (MAX_COMPONENTS + 2) * sum(model.expert.channels) * 4 + 4096
    small = OTHER_FILES_BYTES + history
    peak = max(2 * state, state + weights_file + ood) + small
    return {"resume_state": state, "weights": weights_file, "ood": ood, "other": small, "peak": peak,
            "final": weights_file + ood + small}


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}" if n >= 10 * 2**20 else f"{n / 2**20:.1f}"
