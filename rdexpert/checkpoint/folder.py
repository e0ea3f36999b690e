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

A checkpoint may come from anywhere (a Hub repository the operator did not write), so nothing in it is trusted:
:func:`read_config` checks every field of config.json against :mod:`rdexpert.checkpoint.schema` (type, range,
allowed values), and :func:`load_checkpoint` measures the model it describes on PyTorch's "meta" device (shapes
only, nothing allocated) and checks the memory it needs against a limit (``MAX_MODEL_BYTES``, or the environment
variable ``RDEXPERT_MAX_MODEL_BYTES``), the weights file's size, the backbone facts and every tensor's name and
shape before the real model is built. Each refusal is one :class:`CheckpointError` line.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rdexpert import __version__
from rdexpert.checkpoint.format import CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, CheckpointError
from rdexpert.checkpoint.io import read_json, read_tensors, write_json, write_tensors
from rdexpert.checkpoint.schema import MAX_CONFIG_BYTES, validate_config
from rdexpert.data import train_and_holdout
from rdexpert.hub.resolve import resolve_checkpoint
from rdexpert.model import ExpertTeacherStudent, ModelConfig
from rdexpert.model.backbones import FEATURE_STRIDES, BackboneInfo
from rdexpert.training.recipe import DEFAULT_SEED

# what loading one checkpoint may take in memory (its parameters and buffers, plus its weights file read beside
# them): the largest model rdexpert trains (wide_resnet50_2, "full") takes about 1.3 GB; a config asking for more
# is refused before anything is allocated, unless the environment variable raises the limit
MAX_MODEL_BYTES = 4 * 2**30
MAX_MODEL_BYTES_ENV = "RDEXPERT_MAX_MODEL_BYTES"

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
    return _backbone_facts(model.expert.info, pretrained)


def _backbone_facts(info: BackboneInfo, pretrained: bool) -> dict:
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
    """A checkpoint folder's config.json, checked against the schema (:mod:`rdexpert.checkpoint.schema`): every
    entry point (CLI, API, app) reads configs here, so a tampered one is refused with one CheckpointError line."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{folder} is not an rdexpert checkpoint: {CONFIG_NAME} is missing")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path} is {size} bytes; a {CONFIG_NAME} is at most {MAX_CONFIG_BYTES} bytes")
    try:
        config = read_json(path)
    except ValueError as error:  # also UnicodeDecodeError
        raise CheckpointError(f"{path} is not valid JSON ({' '.join(str(error).split())})") from None
    except RecursionError:
        raise CheckpointError(f"{path} is not valid JSON (nested too deeply)") from None
    return validate_config(config, path)


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


def _check_backbone(config: dict, info: BackboneInfo, model_config: ModelConfig, path: Path) -> None:
    """The stored backbone facts must be what this machine's timm builds for the same name."""
    stored = config.get("backbone")
    if stored is None:
        return
    rebuilt = _backbone_facts(info, stored.get("pretrained", True))
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
    image_size = model_config.image_size if image_size is None else image_size
    if image_size != model_config.image_size:
        problems.append(f"image_size: input section {image_size} vs model section {model_config.image_size}")
    if problems:
        raise CheckpointError(
            f"{path} does not describe the {model_config.backbone} backbone this machine builds: "
            + "; ".join(problems)
            + ". The checkpoint was made for another backbone or preprocessing (or timm changed the model); "
            "use the rdexpert/timm versions it was trained with."
        )


@dataclass(frozen=True)
class Blueprint:
    """What a model config builds, measured on PyTorch's "meta" device: shapes and sizes, no memory allocated."""

    model_bytes: int  # parameters and buffers of the whole model (expert, teacher, student)
    weights: dict  # name -> (shape, is floating point) of every tensor a checkpoint stores (trainable_state_dict)
    weights_bytes: int  # those tensors' bytes, in the model's dtypes
    backbone: BackboneInfo
    dropped: dict = field(default_factory=dict)  # name -> shape: backbone stages older checkpoints stored (ignored)

    @property
    def load_bytes(self) -> int:
        """Memory to load a checkpoint of this model: the model, and its weights file read beside it."""
        return self.model_bytes + self.weights_bytes


@functools.lru_cache(maxsize=16)
def model_blueprint(config: ModelConfig) -> Blueprint:
    """Build the model of ``config`` on the meta device (no weights, no pretrained download) and measure it."""
    with torch.device("meta"):
        model = ExpertTeacherStudent(config, pretrained=False)

    def nbytes(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    stored = model.trainable_state_dict()
    teacher = model.trained_teacher
    dropped = {f"trained_teacher.{k}": shape for k, shape in teacher.dropped.items()} if teacher is not None else {}
    return Blueprint(model_bytes=nbytes(model.parameters()) + nbytes(model.buffers()),
                     weights={k: (tuple(v.shape), v.is_floating_point()) for k, v in stored.items()},
                     weights_bytes=nbytes(stored.values()), backbone=model.expert.info, dropped=dropped)


def max_model_bytes() -> int:
    """The memory one checkpoint may take to load: ``RDEXPERT_MAX_MODEL_BYTES`` when set, else MAX_MODEL_BYTES."""
    raw = os.environ.get(MAX_MODEL_BYTES_ENV, "").strip()
    if not raw:
        return MAX_MODEL_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_MODEL_BYTES_ENV} must be a positive whole number of bytes, got {raw!r}")
    return value


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def _measure(model_config: ModelConfig, path: Path) -> Blueprint:
    """The blueprint of the model ``path`` describes, refused when it cannot be built or needs too much memory."""
    c = model_config
    try:
        plan = model_blueprint(c)
    except Exception as error:  # timm: unknown name, no stride-4/8/16 features, ...
        raise CheckpointError(f"{path}: model.backbone {c.backbone!r} cannot be built here "
                              f"({type(error).__name__}: {' '.join(str(error).split())[:300]})") from None
    limit = max_model_bytes()
    if plan.load_bytes > limit:
        raise CheckpointError(
            f"{path}: the model section (backbone {c.backbone}, variant {c.variant}, ocbe_blocks {c.ocbe_blocks}, "
            f"decoder_blocks {list(c.decoder_blocks)}) needs about {_mib(plan.load_bytes)} to load "
            f"({_mib(plan.model_bytes)} of parameters and buffers, {_mib(plan.weights_bytes)} of weights read beside "
            f"them), above the limit of {_mib(limit)}; set {MAX_MODEL_BYTES_ENV} (bytes) to allow more"
        )
    return plan


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
    config_path = folder / CONFIG_NAME
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: invalid model section ({error})") from None
    weights_path = folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}")
    # everything is checked against the model measured on the meta device before the real one is built
    plan = _measure(model_config, config_path)
    dropped_bytes = 4 * sum(math.prod(shape) for shape in plan.dropped.values())  # float32 at most
    size = weights_path.stat().st_size
    most = plan.weights_bytes + dropped_bytes + 2**20 + 1024 * (len(plan.weights) + len(plan.dropped))
    if size > most:  # its tensors in float32 and a generous header: more is not the weights of this model
        raise CheckpointError(f"{weights_path} is {size} bytes; the weights of a {model_config.backbone} / "
                              f"{model_config.variant} model take at most {most}")
    _check_backbone(config, plan.backbone, model_config, config_path)
    try:
        state = read_tensors(weights_path)
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights_path} is not a readable safetensors file "
                              f"({' '.join(str(error).split())[:300]})") from None
    expected_hash = config.get("weights_sha256")
    if expected_hash is not None and file_sha256(weights_path) != expected_hash:
        raise CheckpointError(
            f"{weights_path} is not the weights file {CONFIG_NAME} was saved with (its SHA-256 differs): "
            "a save was interrupted between the two files, or one was replaced. Re-run the training command "
            "(it resumes) or restore both files together."
        )
    expected = plan.weights
    # the teacher's stages past stride 16, stored before they were dropped (rdexpert.model.backbones): checked, unused
    stale = [k for k in state if k in plan.dropped and k not in expected]
    if any(tuple(state[k].shape) != plan.dropped[k] for k in stale):
        raise CheckpointError(f"{weights_path} does not match a {model_config.backbone} / {model_config.variant} "
                              "model: its unused backbone stages have other shapes")
    for k in stale:
        del state[k]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k][0]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k][0]
    ]
    mismatched += [f"{k}: checkpoint {state[k].dtype} vs model {'floating point' if floating else 'integer'}"
                   for k, (_, floating) in expected.items() if k in state and state[k].is_floating_point() != floating]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{weights_path} does not match a {model_config.backbone} / {model_config.variant} model: "
            f"{len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(mismatched)} shape mismatches {mismatched[:3]}"
        )
    if pretrained_expert is None:
        pretrained_expert = CheckpointInfo.from_config(config).pretrained
    model = ExpertTeacherStudent(model_config, pretrained=pretrained_expert)
    real = model.trainable_state_dict()
    # tensors stored in half precision are upcast to the model's dtype here
    model.load_state_dict({k: v.to(real[k].dtype) for k, v in state.items()}, strict=False)
    config["source"] = source
    return model.to(map_location).eval(), config


def compact_checkpoint(source: str | Path, out: str | Path, dtype: str = "float16") -> Path:
    """A copy of a local checkpoint folder whose weights file holds only what this rdexpert's model stores (backbone
    stages an older version kept are dropped), in ``dtype``: float16 halves the size again (a Space, a Git repo),
    and is upcast when loaded. The weights are checked by loading them first; every other file is copied as is;
    the config names the new weights' hash and ``weights_dtype``."""
    import shutil

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ValueError("compact into another folder: the source keeps its full-precision weights")
    config = read_config(source)
    model, _ = load_checkpoint(source, pretrained_expert=False)  # the expert is not stored: no need for its weights
    cast = torch.float16 if dtype == "float16" else torch.float32
    state = {k: v.to(cast) if v.is_floating_point() else v for k, v in model.trainable_state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name in (WEIGHTS_NAME, CONFIG_NAME) or item.name.startswith("."):
            continue
        target = out / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    write_tensors(out / WEIGHTS_NAME, state, metadata={"format": "pt"})
    config.update(weights_sha256=file_sha256(out / WEIGHTS_NAME), weights_dtype=dtype)
    write_json(out / CONFIG_NAME, config)
    return out
