"""A training run's settings: presets, the recipe (rdexpert.training.recipe) and the bounds checked before any work.

Why a module of its own: the CLI, the app's Fine-tune tab and the benches build a
:class:`TrainConfig` without needing the training loop, and a resumed run compares
its stored config with the new one field by field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from rdexpert.model import VARIANTS, ModelConfig
from rdexpert.synthesis import AnomalySynthesizer
from rdexpert.synthesis.foreground import FOREGROUND_METHODS
from rdexpert.training.recipe import (
    CHOICES,
    DEFAULT_RECIPE,
    DEFAULT_SEED,
    LONG_SCHEDULE_CATEGORIES,
    OLD_RECIPE_NAMES,
    PRE_RECIPE_SET,
    RECIPES,
    Recipe,
    get_recipe,
)

# Presets. `paper` is docs/design.md §3.5. `cpu` was sized with bench/train_speed.py on a
# 2-core machine (numbers in README "Training presets"): Lite0 keeps the paper's
# 256 px input; the teacher's backward pass dominates the step, so batch 4 (not 8)
# buys twice the iterations for the same minutes, and 800 iterations fit in the
# 30-minute budget with margin. Time per iteration does not depend on category size.
PRESETS: dict[str, dict] = {
    "paper": {"backbone": "wide_resnet50_2", "image_size": 256, "batch_size": 16, "iterations": 5000},
    "cpu": {"backbone": "tf_efficientnet_lite0", "image_size": 256, "batch_size": 4, "iterations": 800},
    # a fine-tune in minutes on a CPU Space: bench/ablation.py measured this budget at 99.1 ± 0.6 I-AUROC and
    # 95.6 ± 0.4 P-AUROC on metal_plate (3 seeds); wall time from start to a calibrated checkpoint in
    # bench/results/finetune_speed.md
    "quick": {"backbone": "tf_efficientnet_lite0", "image_size": 128, "batch_size": 4, "iterations": 200},
}


TEACHER_BN_MODES = ("frozen", "batch")
MAX_ITERATIONS, MAX_BATCH_SIZE = 10_000_000, 4096
REQUIRED = object()  # a TrainConfig field without a default


def setting(default, help: str, choices=None):
    """A TrainConfig field with the help text (and allowed values) its command-line flag shows (rdexpert.cli);
    ``default`` REQUIRED: the field must be given."""
    metadata = {"help": help, "choices": choices}
    return field(metadata=metadata) if default is REQUIRED else field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """One training run. ``preset`` fills backbone, image size, batch and iterations unless given.

    Every field is a ``rdexpert train`` flag (``--student-lr`` for ``student_lr``), built from the field's
    type, default and help text, so the command line and the API cannot drift apart."""

    data_root: str = setting(REQUIRED, "dataset root (MVTec-style, MVTec AD 2, VisA, anomalib Folder, or a plain folder)")
    category: str | None = setting(REQUIRED, "category folder under the root (e.g. metal_plate); train also takes "
                                   "'all' or a comma-separated list: one checkpoint per category in OUT/<category>")
    out: str = setting(REQUIRED, "output folder")
    variant: str = setting("full", "ablation variant (docs/design.md 3.4)", tuple(VARIANTS))
    preset: str = setting("cpu", "; ".join(f"{k}: {v}" for k, v in PRESETS.items()), tuple(PRESETS))
    backbone: str | None = setting(None, "any timm CNN with stride-4/8/16 features (default: the preset's)")
    image_size: int | None = setting(None, "square input size in pixels, a multiple of 32 (default: the preset's)")
    batch_size: int | None = setting(None, "images per step (default: the preset's)")
    iterations: int | None = setting(None, "training steps (default: the preset's; twice that for the released "
                                     "code's long categories)")
    student_lr: float = setting(0.005, "Adam learning rate of the student (OCBE + decoder)")
    teacher_lr: float = setting(1e-4, "Adam learning rate of the trained teacher")
    betas: tuple[float, float] = setting((0.5, 0.999), "Adam betas of both optimizers")
    seed: int = setting(DEFAULT_SEED, "random seed (the released code's)")
    textures: str | None = setting(None, "folder of anomaly textures (e.g. DTD images/); default procedural")
    foreground: str | None = setting(None, "foreground mask for synthetic defects; default: chosen per category "
                                     "from its images (rdexpert.synthesis.foreground)", tuple(FOREGROUND_METHODS))
    layout: str = setting("auto", "dataset layout (default: guessed)")
    recipe: str = setting(DEFAULT_RECIPE, "released (old name: reference): the authors' released training and "
                          "scoring, step for step; "
                          "improved (default): keeps the deviations measured better by bench/recipe.py (README "
                          "'Reproducing the paper')", tuple(RECIPES) + tuple(OLD_RECIPE_NAMES))
    recipe_set: dict | None = setting(None, f"switch one choice of the recipe, NAME=VALUE (repeatable); NAME one of "
                                      f"{', '.join(CHOICES)}")
    holdout_fraction: float | None = setting(None, "share of the normal training images held out for the threshold "
                                             "and the health check (default: the recipe's)")
    device: str = setting("auto", "auto, cpu, cuda, cuda:1 ...")
    num_workers: int | None = setting(None, "data-loader worker processes (default: by the machine's cores)")
    save_every: int = setting(100, "iterations between resume states ...")
    save_seconds: float = setting(60.0, "... or seconds, whichever comes first (a killed run loses at most this)")
    pretrained: bool = setting(True, "the expert's ImageNet weights (--no-pretrained: random; timing and tests only)")
    teacher_bn: str = setting("batch", "batch: the teacher's BatchNorm in training mode, as the authors' released "
                              "code (its statistics adapt to the product); frozen: BatchNorm keeps the expert's "
                              "statistics (the teacher then barely moves)", TEACHER_BN_MODES)
    health_every: int | None = setting(None, "iterations between health checks on held-out normal images + "
                                       "synthetic defects (default: iterations // 8; 0: only at the end)")
    health_draws: int = setting(2, "synthetic anomalies per held-out image in the health check")
    init_from: str | None = setting(None, "warm start: begin from this checkpoint's trained teacher and student "
                                    "(folder or Hub address; same backbone) instead of the expert and a fresh "
                                    "student (rdexpert.training.loop.warm_start)")

    def __post_init__(self):
        self.recipe = OLD_RECIPE_NAMES.get(self.recipe, self.recipe)
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        recipe = self.resolved_recipe()
        if self.iterations is None and self.category in LONG_SCHEDULE_CATEGORIES:
            # the released code's 10000 instead of 5000, in both recipes (the long categories need it
            # whichever way the iterations are counted)
            self.iterations = 2 * PRESETS[self.preset]["iterations"]
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.backbone == "wide_resnet50_2" and recipe.wrn_weights == "tv_in1k":
            self.backbone = "wide_resnet50_2.tv_in1k"  # torchvision's ImageNet weights, as the released code
        if self.holdout_fraction is None:
            self.holdout_fraction = recipe.holdout_fraction
        self.betas = tuple(self.betas)
        if not 1 <= self.iterations <= MAX_ITERATIONS or not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"iterations must be in [1, {MAX_ITERATIONS}] and batch size in [1, {MAX_BATCH_SIZE}], "
                             f"got {self.iterations} and {self.batch_size}")
        self.model_config()  # checks image size and variant before any data is read
        if self.teacher_bn not in TEACHER_BN_MODES:
            raise ValueError(f"unknown teacher_bn {self.teacher_bn!r}; choose one of {TEACHER_BN_MODES}")
        if self.health_every is None:
            self.health_every = max(1, self.iterations // 8)
        if self.health_every < 0:
            raise ValueError("health_every must be >= 0 (0 checks only at the end)")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Settings that would fail only after the data and the model are loaded, refused up front."""
        problems = []
        if self.foreground is not None and self.foreground not in FOREGROUND_METHODS:
            problems.append(f"foreground {self.foreground!r} is not one of {FOREGROUND_METHODS}")
        if not 0 <= self.holdout_fraction < 1:
            problems.append(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction!r}")
        if not (self.student_lr > 0 and self.teacher_lr > 0):
            problems.append(f"learning rates must be > 0, got {self.student_lr!r} and {self.teacher_lr!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.save_every < 1 or self.save_seconds < 0:
            problems.append(f"save_every must be >= 1 and save_seconds >= 0, got {self.save_every!r} and "
                            f"{self.save_seconds!r}")
        if self.health_draws < 1 or (self.num_workers is not None and self.num_workers < 0):
            problems.append(f"health_draws must be >= 1 and num_workers >= 0, got {self.health_draws!r} and "
                            f"{self.num_workers!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def resolved_recipe(self) -> Recipe:
        return get_recipe(self.recipe, self.recipe_set)

    def synthesizer(self, foreground_method: str, textures: str | None = None) -> AnomalySynthesizer:
        """The run's synthetic-anomaly maker (its textures unless ``textures`` is given, the recipe's texture and
        mask choices): one place for training and for re-calibrating its checkpoint later."""
        recipe = self.resolved_recipe()
        return AnomalySynthesizer(textures=textures or self.textures, foreground=foreground_method,
                                  augment_textures=recipe.texture_augmentation, mask_rotation=recipe.mask_rotation)

    def model_config(self) -> ModelConfig:
        recipe = self.resolved_recipe()
        return ModelConfig(backbone=self.backbone, variant=self.variant, image_size=self.image_size,
                           map_align_corners=recipe.map_align_corners, blur_border=recipe.blur_border,
                           precision=recipe.precision, input_fit=recipe.input_fit)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Unknown keys (e.g. a field of an older rdexpert) are ignored, so old configs still load; a config
        written before recipes existed gets the choices rdexpert made then (``recipe.PRE_RECIPE_SET``)."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if "recipe" not in data:
            known.update(recipe="released", recipe_set=PRE_RECIPE_SET)
        elif isinstance(data.get("recipe_choices"), dict):  # a checkpoint's record: every choice as it trained,
            # even where the named recipe has changed since (e.g. the never-empty masks of row 9)
            choices = {k: v for k, v in data["recipe_choices"].items() if k in CHOICES}
            known["recipe_set"] = {**choices, **(known.get("recipe_set") or {})}
        return cls(**known)


# Settings that may differ when an interrupted run is resumed (e.g. to train it longer).
RESUMABLE_CHANGES = {"iterations", "device", "num_workers", "save_every", "save_seconds", "health_every"}
