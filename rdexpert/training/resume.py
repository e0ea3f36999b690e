"""Where a training run resumes from: the one-file resume state and what can be read from it.

Why a module of its own: the trainer writes and reads the state, while the CLI, the many-categories runner and the
fault tests only ask where a run would resume; the file's layout is described once, here.
"""

from __future__ import annotations

import json
from pathlib import Path

from rdexpert.checkpoint.io import read_tensor_metadata


def history_until(history: dict, iteration: int) -> dict:
    """The loss history up to ``iteration``. Only for resume states written before the history was stored
    inside the state (:data:`RESUME_KEY`): their loss_history.json may run ahead of the state's iteration."""
    kept = sum(1 for i in history.get("iteration", []) if i <= iteration)
    return {
        key: [h for h in values if h.get("iteration", 0) <= iteration] if key == "health"
        else values[:kept] if isinstance(values, list) else values
        for key, values in history.items()
    }


# The resume state is ONE file, OUT/resume/state.safetensors: the trainable weights and the optimizer moments as
# tensors, and under this metadata key (JSON) everything else: iteration, epoch, config, optimizer settings, RNG
# state and the loss history. It is replaced atomically (rdexpert.checkpoint.io.atomic_write), so it is always one
# whole save, the previous one kept until the new one is complete: a kill at any moment resumes from one
# consistent state, never from weights of one save with the counters of another.
# OUT/resume/state.json is written after it: a readable summary (iteration, config, the save's id) for people and
# tools; resuming does not rely on it (a kill between the two leaves it one save behind, and the newer state is used).
RESUME_KEY = "rdexpert_resume"
RESUME_FORMAT = 2  # 1 (no RESUME_KEY): state.json held the counters, paired with whatever tensors were on disk


def resume_iteration(out: str | Path) -> int | None:
    """The iteration a run in ``out`` would resume from (None: no usable resume state), read from the state file."""
    path = Path(out) / "resume" / "state.safetensors"
    try:
        record = json.loads(read_tensor_metadata(path)[RESUME_KEY])
    except Exception:  # missing, unreadable (safetensors' own error types) or an old-format state
        return None
    return int(record["iteration"])
