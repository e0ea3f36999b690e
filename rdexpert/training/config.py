"""A training run's settings: presets, the recipe (rdexpert.training.recipe) and the bounds checked before any work.

Why a module of its own: the CLI, the app's Fine-tune tab and the benches build a
:class:`TrainConfig` without needing the training loop, and a resumed run compares
its stored config with the new one field by field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from rdexpert.model import ModelConfig
from rdexpert.synthesis import AnomalySynthesizer
from rdexpert.training.recipe import CHOICES, LONG_SCHEDULE_CATEGORIES, PRE_RECIPE_SET, Recipe, get_recipe

# Presets. `paper` is DESIGN.md §3.5. `cpu` was sized with bench/train_speed.py on a
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


@dataclass
class TrainConfig:
    """One training run. ``preset`` fills backbone, image size, batch and iterations unless given."""

    data_root: str
    category: str | None
    out: str
    variant: str = "full"
    preset: str = "cpu"
    backbone: str | None = None
    image_size: int | None = None
    batch_size: int | None = None
    iterations: int | None = None
    student_lr: float = 0.005
    teacher_lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 111
    textures: str | None = None
    foreground: str | None = None  # None: the recipe's per-category table (rdexpert.synthesis)
    layout: str = "auto"
    # "improved" (default) or "reference" (the authors' released code, step for step); recipe_set
    # switches single choices of it, e.g. {"mask_resize": "direct"} (rdexpert.training.recipe)
    recipe: str = "improved"
    recipe_set: dict | None = None
    holdout_fraction: float | None = None  # None: the recipe's (0 for reference: it trains on every image)
    device: str = "auto"
    num_workers: int | None = None
    save_every: int = 100  # iterations between resume states ...
    save_seconds: float = 60.0  # ... or seconds, whichever comes first (a killed run loses at most this)
    pretrained: bool = True
    # "batch" (default): the teacher's BatchNorm in training mode, as the authors' released code;
    # its statistics adapt to the product, which makes the teacher start far from the expert
    # (bench/bn_gap.py) but beat it on every real test split of bench/robustness.py.
    # "frozen": BatchNorm kept on the expert's statistics (the teacher then barely moves).
    teacher_bn: str = "batch"
    health_every: int | None = None  # iterations between health checks (rdexpert.training.health); None: iterations // 8
    health_draws: int = 2  # synthetic anomalies per held-out image in the health check
    # warm start: a checkpoint (folder or Hub reference) with the same backbone whose trained teacher and
    # student weights replace the fresh ones before the first step (rdexpert.training.loop.warm_start)
    init_from: str | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        recipe = self.resolved_recipe()
        if self.iterations is None and self.category in LONG_SCHEDULE_CATEGORIES:
            # the released code's 10000 instead of 5000, in both recipes (issue 24: the long categories need it
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
            known.update(recipe="reference", recipe_set=PRE_RECIPE_SET)
        elif isinstance(data.get("recipe_choices"), dict):  # a checkpoint's record: every choice as it trained,
            # even where the named recipe has changed since (e.g. issue 19's never-empty masks)
            choices = {k: v for k, v in data["recipe_choices"].items() if k in CHOICES}
            known["recipe_set"] = {**choices, **(known.get("recipe_set") or {})}
        return cls(**known)


# Settings that may differ when an interrupted run is resumed (e.g. to train it longer).
RESUMABLE_CHANGES = {"iterations", "device", "num_workers", "save_every", "save_seconds", "health_every"}
