"""A checkpoint is a folder: ``config.json`` (how to rebuild) + ``model.safetensors`` (teacher and student).

The expert is never stored: it is the pretrained backbone, rebuilt from its
source. Only JSON and safetensors are ever read, so loading an untrusted
checkpoint cannot execute code. Any other file in the folder (a training
``resume/`` state, pictures, a model card) is ignored by the loader.

config.json sections:

- ``format``, ``format_version``, ``rdexpert_version``;
- ``model``: :class:`~rdexpert.model.ModelConfig` (backbone, variant, image size, ...);
- ``backbone``: channels, input normalisation mean/std, feature strides, whether
  the expert was pretrained; checked against the rebuilt backbone on load, so a
  timm or weight-source change that would silently shift the features fails loudly;
- ``input``: image size, colour order, value range and resize rule;
- ``training`` (the run's settings: preset, seed, ...), ``dataset`` (root, category),
  ``calibration`` (:mod:`rdexpert.inference.calibration`), ``metrics`` (written by
  ``rdexpert test --save-metrics``), ``license`` (optional: id and attribution);
- ``ood`` (optional): the out-of-distribution check stored in ``ood.safetensors``, with that
  file's SHA-256 (:mod:`rdexpert.inference.ood`); checkpoints without it have no such check.

Checkpoints written before the ``backbone``/``input`` sections existed still
load; they are checked by tensor shapes only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rdexpert import __version__
from rdexpert.checkpoint.format import CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, CheckpointError
from rdexpert.checkpoint.io import read_json, read_tensors, write_json, write_tensors
from rdexpert.data import train_and_holdout
from rdexpert.hub.resolve import resolve_checkpoint
from rdexpert.model import ExpertTeacherStudent, ModelConfig
from rdexpert.training.recipe import DEFAULT_SEED
from rdexpert.model.backbones import FEATURE_STRIDES

INPUT_CONVENTION = {
    "channels": "RGB",
    "range": [0.0, 1.0],
    "resize": "bilinear with antialiasing, no crop (rdexpert.data.fit_image): model.input_fit 'squash' resizes to "
              "image_size x image_size; 'pad' keeps the aspect ratio (longer side = image_size), centres the picture "
              "and edge-fills the rest; maps and scores then cover the picture's box only (rdexpert.data.content_box)",
    "normalization": "inside the model, with backbone.mean / backbone.std",
}


@dataclass(frozen=True)
class CheckpointInfo:
    """What callers read from a config.json; a missing section reads as empty (dict) or None."""

    variant: str | None = None
    default_reference: str = "teacher"  # chosen at training by the health check (rdexpert.training.health)
    health: dict = field(default_factory=dict)  # the final health check, the choice and its reason
    backbone: str | None = None  # the backbone's timm name
    image_size: int | None = None  # the model's input size
    pretrained: bool = True  # the expert came from pretrained weights
    mean: list | None = None  # input normalisation of the backbone
    std: list | None = None
    input_size: int | None = None  # the ``input`` section's image size (checked against the model's)
    calibration: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    license: dict = field(default_factory=dict)
    ood: dict = field(default_factory=dict)  # the out-of-distribution check (rdexpert.inference.ood)
    rdexpert_version: str | None = None

    @classmethod
    def from_config(cls, config: dict | None) -> "CheckpointInfo":
        config = config or {}

        def section(name: str) -> dict:
            return config.get(name) or {}

        model, backbone = section("model"), section("backbone")
        return cls(
            variant=model.get("variant"), default_reference=model.get("default_reference") or "teacher",
            health=section("health"), backbone=model.get("backbone"), image_size=model.get("image_size"),
            pretrained=backbone.get("pretrained", True), mean=backbone.get("mean"), std=backbone.get("std"),
            input_size=section("input").get("image_size"), calibration=section("calibration"),
            metrics=section("metrics"), training=section("training"), dataset=section("dataset"),
            license=section("license"), ood=section("ood"), rdexpert_version=config.get("rdexpert_version"),
        )

    @property
    def default_setting(self) -> str:
        """The inference setting (reference/gate) whose metrics describe the checkpoint."""
        return f"{self.default_reference}/gated"

    @property
    def category(self) -> str | None:
        return self.dataset.get("category")

    @property
    def threshold(self) -> float | None:
        """The calibrated raw-score threshold, when one is stored."""
        return self.calibration.get("threshold")


def backbone_section(model: ExpertTeacherStudent, pretrained: bool) -> dict:
    info = model.expert.info
    return {
        "name": info.name,
        "channels": list(info.channels),
        "mean": list(info.mean),
        "std": list(info.std),
        "feature_strides": list(FEATURE_STRIDES),
        "pretrained": bool(pretrained),
    }


def save_checkpoint(model: ExpertTeacherStudent, folder: str | Path, **info) -> Path:
    """Write the model's config and trainable weights; ``info`` (training, dataset, calibration, ...) goes into config.json.

    ``info["training"]["pretrained"]`` (default True) records whether the expert
    came from pretrained weights, so loading rebuilds the same expert.
    """
    folder = Path(folder)
    pretrained = CheckpointInfo.from_config(info).training.get("pretrained", True)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rdexpert_version": __version__,
        "model": model.config.to_dict(),
        "backbone": backbone_section(model, pretrained),
        "input": {"image_size": model.config.image_size, **INPUT_CONVENTION},
        **info,
    }
    # weights first, then the config naming their hash: a save killed between the two writes leaves a
    # config whose hash does not match, which loading refuses instead of pairing new weights with an old config
    write_tensors(folder / WEIGHTS_NAME, model.trainable_state_dict(), metadata={"format": "pt"})
    config["weights_sha256"] = file_sha256(folder / WEIGHTS_NAME)
    write_json(folder / CONFIG_NAME, config)
    return folder


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_config(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{folder} is not an rdexpert checkpoint: {CONFIG_NAME} is missing")
    try:
        config = read_json(path)
    except ValueError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{path} has no 'model' section; it was not written by rdexpert")
    version = config.get("format_version", FORMAT_VERSION)
    if config.get("format", FORMAT) != FORMAT or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is format {config.get('format')!r} version {version}; this rdexpert {__version__} "
            f"reads {FORMAT!r} up to version {FORMAT_VERSION}. Upgrade rdexpert."
        )
    return config


def update_config(folder: str | Path, **sections) -> dict:
    """Replace top-level sections of a local checkpoint's config.json (atomically); returns the new config."""
    folder = Path(folder)
    config = read_config(folder)
    config.update(sections)
    write_json(folder / CONFIG_NAME, config)
    return config


def record_metrics(folder: str | Path, setting: str, metrics: dict, f1_threshold: float | None = None) -> dict:
    """Store test metrics under ``metrics[setting]`` (e.g. "teacher/gated"), and the F1-optimal threshold if given."""
    info = CheckpointInfo.from_config(read_config(folder))
    sections = {"metrics": {**info.metrics, setting: metrics}}
    if f1_threshold is not None:
        sections["calibration"] = {**info.calibration, "f1_threshold": float(f1_threshold)}
    return update_config(folder, **sections)


def training_split(config: dict, data_root: str | Path | None = None, category: str | None = None,
                   layout: str | None = None) -> tuple[list, list]:
    """(train, held-out) normal samples of the run that wrote ``config``: the same listing, holdout fraction and
    seed as the trainer's. ``data_root`` / ``category`` / ``layout`` default to what the checkpoint recorded."""
    training, dataset = config.get("training") or {}, config.get("dataset") or {}
    data_root = data_root or dataset.get("root") or training.get("data_root")
    category = category if category is not None else dataset.get("category", training.get("category"))
    if not data_root or not Path(data_root).is_dir():
        raise FileNotFoundError(f"data folder {data_root!r} not found; pass --data-root (the checkpoint's "
                                "training data)")
    layout = layout or dataset.get("layout") or training.get("layout", "auto")
    train, holdout = train_and_holdout(data_root, category, layout, float(training.get("holdout_fraction", 0.1)),
                                       seed=int(training.get("seed", DEFAULT_SEED)))
    if not train:
        raise ValueError(f"no normal training images for category {category!r} in {data_root}")
    return train, holdout


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_backbone(config: dict, model: ExpertTeacherStudent, path: Path) -> None:
    """The stored backbone facts must be what this machine's timm builds for the same name."""
    stored = config.get("backbone")
    if stored is None:
        return
    rebuilt = backbone_section(model, stored.get("pretrained", True))
    problems = [
        f"{key}: config.json {stored[key]} vs rebuilt {rebuilt[key]}"
        for key in ("name", "channels", "feature_strides")
        if key in stored and _plain(stored[key]) != _plain(rebuilt[key])
    ]
    problems += [
        f"{key} (input normalisation): config.json {stored[key]} vs rebuilt {rebuilt[key]}"
        for key in ("mean", "std")
        if key in stored and any(abs(a - b) > 1e-6 for a, b in zip(stored[key], rebuilt[key]))
    ]
    image_size = CheckpointInfo.from_config(config).input_size
    image_size = model.config.image_size if image_size is None else image_size
    if image_size != model.config.image_size:
        problems.append(f"image_size: input section {image_size} vs model section {model.config.image_size}")
    if problems:
        raise CheckpointError(
            f"{path} does not describe the {model.config.backbone} backbone this machine builds: "
            + "; ".join(problems)
            + ". The checkpoint was made for another backbone or preprocessing (or timm changed the model); "
            "use the rdexpert/timm versions it was trained with."
        )


def load_checkpoint(
    ref: str | Path,
    pretrained_expert: bool | None = None,
    map_location: str | torch.device = "cpu",
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[ExpertTeacherStudent, dict]:
    """Rebuild the model from a checkpoint folder or a Hub address ``ORG/NAME/CATEGORY[@REVISION]``.

    Every stored tensor must match the rebuilt model by name and shape, and the
    config's backbone facts must match the rebuilt backbone. ``pretrained_expert``
    None rebuilds the expert as it was trained (config ``backbone.pretrained``).
    The returned config gains a ``source`` entry saying where it was read from. ``token`` and ``cache_dir`` go
    to huggingface_hub for a Hub address. :class:`rdexpert.checkpoint.pretrained.Checkpoint` wraps the result.
    """
    folder, source = resolve_checkpoint(ref, cache_dir=cache_dir, token=token)
    config = read_config(folder)
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: invalid model section ({error})") from None
    weights_path = folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}")
    if pretrained_expert is None:
        pretrained_expert = CheckpointInfo.from_config(config).pretrained
    model = ExpertTeacherStudent(model_config, pretrained=pretrained_expert)
    _check_backbone(config, model, folder / CONFIG_NAME)
    try:
        state = read_tensors(weights_path)
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({error})") from None
    expected_hash = config.get("weights_sha256")
    if expected_hash is not None and file_sha256(weights_path) != expected_hash:
        raise CheckpointError(
            f"{weights_path} is not the weights file {CONFIG_NAME} was saved with (its SHA-256 differs): "
            "a save was interrupted between the two files, or one was replaced. Re-run the training command "
            "(it resumes) or restore both files together."
        )
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{weights_path} does not match a {model_config.backbone} / {model_config.variant} model: "
            f"{len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(mismatched)} shape mismatches {mismatched[:3]}"
        )
    # tensors stored in half precision are upcast to the model's dtype here
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    config["source"] = source
    return model.to(map_location).eval(), config


def compact_checkpoint(source: str | Path, out: str | Path) -> Path:
    """A copy of a local checkpoint folder with float16 weights: half the size (a Space or a Git repo
    without LFS), upcast again when loaded. Every other file is copied as is; the config names the new
    weights' hash and ``weights_dtype``."""
    import shutil

    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ValueError("compact into another folder: the source keeps its full-precision weights")
    config = read_config(source)
    state = read_tensors(source / WEIGHTS_NAME)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    out.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name in (WEIGHTS_NAME, CONFIG_NAME) or item.name.startswith("."):
            continue
        target = out / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    write_tensors(out / WEIGHTS_NAME, half, metadata={"format": "pt"})
    config.update(weights_sha256=file_sha256(out / WEIGHTS_NAME), weights_dtype="float16")
    write_json(out / CONFIG_NAME, config)
    return out
