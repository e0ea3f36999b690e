"""The schema of a checkpoint's config.json, checked where every entry point reads one (``read_config``).

Why: a checkpoint may come from anywhere (a Hub repository its user did not write), and its config.json decides
what gets built. Every field is checked here for type, range and allowed values before anything is built or
allocated, and a violation is one :class:`~rdexpert.checkpoint.format.CheckpointError` line naming the file, the
field (a dotted path such as ``model.decoder_blocks`` or ``calibration.holdout_scores[3]``) and what is allowed.
The bounds are those of a real model: the ``model`` section's are :class:`~rdexpert.model.ModelConfig`'s own
(``rdexpert.model.ets``: image size, blocks, blur, the allowed choices), mean/std are 3 numbers in [0, 1],
thresholds and scores are finite numbers, metrics are numbers or strings, free text and lists are bounded, and any
other JSON (sections of a newer rdexpert, nested records) is bounded in depth. What the model will cost in memory is
checked afterwards, before it is built (``rdexpert.checkpoint.folder.load_checkpoint``).

A missing field or section is fine (checkpoints written before it existed still load; ``null`` reads as absent for
the optional sections). An unknown top-level section is logged as a warning, not refused: a newer rdexpert may
add sections. Inside the ``model`` section an unknown field is an error: the model could not be rebuilt faithfully.

Why a table and not pydantic: pydantic is only installed with the app's optional extra (as a dependency of
gradio), and the core package must load checkpoints without it. The model section already has a dataclass
with its own checks (ModelConfig); the rest is a declarative table of the specs in ``rdexpert.checkpoint.specs``.
"""

from __future__ import annotations

import logging

from rdexpert.checkpoint.format import FORMAT, FORMAT_VERSION, OOD_NAME, CheckpointError
from rdexpert.checkpoint.specs import (
    ANY,
    Bool,
    Either,
    Int,
    List,
    Map,
    Null,
    Num,
    Obj,
    Spec,
    Text,
    Violation,
    child,
    optional,
    shown,
)
from rdexpert.data.images import INPUT_FITS
from rdexpert.model.anomaly_map import BLUR_BORDERS
from rdexpert.model.ets import (
    BACKBONE_NAME,
    MAX_BLOCKS,
    MAX_BLUR_SIGMA,
    MAX_IMAGE_SIZE,
    MIN_BLOCKS,
    MIN_IMAGE_SIZE,
    PRECISIONS,
    REFERENCES,
    SIZE_MULTIPLE,
    VARIANTS,
)

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 16 * 2**20  # a real config.json is a few KiB; thousands of stored scores stay far below this
MAX_SCORES = 1_000_000  # stored scores (one per held-out image or synthetic anomaly)
MAX_SCORE = 1e6  # raw scores are sums of cosine distances (a few units); thresholds and scores stay within +-this
MAX_CHANNELS = 8192  # feature channels of a backbone stage (wide_resnet50_2's stride-16 stage has 1024)
MAX_SEED = 2**64 - 1
FORMAT_VERSION_LIMIT = 2**31  # a format_version above FORMAT_VERSION asks for a newer rdexpert (read_config)


# -- the table -------------------------------------------------------------------------------------------------
TEXT = Text()
NAME = Text(max_length=4096)  # a category, a layout, a path
NUMBER = Num()
ANY_NUMBER = Num(finite=False)
COUNT = Int(0, 2**53)
SCORE = Num(-MAX_SCORE, MAX_SCORE)
SCORES = List(SCORE, max_length=MAX_SCORES)
SHA256 = Text(pattern=r"[0-9a-f]{64}", pattern_words="64 lowercase hexadecimal digits (a SHA-256)")
BACKBONE = Text(pattern=BACKBONE_NAME, pattern_words="a timm model name (letters, digits, '_', '.', '-'; at most 128)")
IMAGE_SIZE = Int(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, SIZE_MULTIPLE)
BLOCKS = Int(MIN_BLOCKS, MAX_BLOCKS)
MEASURE = Either((ANY_NUMBER, TEXT, Null()))  # one metric or health value (may be NaN where undefined)

# the model section: ModelConfig's fields with ModelConfig's bounds (rdexpert.model.ets); no other field
MODEL = Obj({
    "backbone": BACKBONE,
    "variant": Text(choices=tuple(VARIANTS)),
    "image_size": IMAGE_SIZE,
    "ocbe_blocks": BLOCKS,
    "decoder_blocks": List(BLOCKS, 3, 3),
    "blur_sigma": Num(0.0, MAX_BLUR_SIGMA),
    "default_reference": Text(choices=REFERENCES),
    "map_align_corners": Bool(),
    "blur_border": Text(choices=tuple(BLUR_BORDERS)),
    "precision": Text(choices=tuple(PRECISIONS)),
    "input_fit": Text(choices=tuple(INPUT_FITS)),
}, rest=None)

SECTIONS: dict[str, Spec] = {
    "format": Text(choices=(FORMAT,)),
    "format_version": Int(1, FORMAT_VERSION_LIMIT),
    "rdexpert_version": Text(max_length=64),
    "model": MODEL,
    "backbone": optional(Obj({
        "name": BACKBONE,
        "channels": List(Int(1, MAX_CHANNELS), 3, 3),
        "mean": List(Num(0.0, 1.0), 3, 3),
        "std": List(Num(0.01, 1.0), 3, 3),
        "feature_strides": List(Int(1, 64), 3, 3),
        "pretrained": Bool(),
    })),
    "input": optional(Obj({
        "image_size": IMAGE_SIZE,
        "channels": Text(choices=("RGB",)),
        "range": List(NUMBER, 2, 2),
        "resize": TEXT,
        "normalization": TEXT,
    })),
    "training": optional(Obj({  # the run's settings (rdexpert.training.config.TrainConfig) and facts about it
        "data_root": optional(NAME), "category": optional(NAME), "out": optional(NAME),
        "variant": optional(NAME), "preset": optional(NAME), "backbone": optional(BACKBONE),
        "image_size": optional(IMAGE_SIZE), "batch_size": optional(Int(1, 2**31)),
        "iterations": optional(Int(1, 2**53)), "iterations_run": COUNT,
        "student_lr": NUMBER, "teacher_lr": NUMBER, "betas": List(NUMBER, 2, 2),
        "seed": Int(-MAX_SEED, MAX_SEED), "holdout_fraction": optional(Num(0.0, 1.0)),
        "textures": optional(NAME), "foreground": optional(NAME), "foreground_method": optional(NAME),
        "foreground_reason": optional(TEXT), "layout": optional(NAME), "recipe": optional(NAME),
        "recipe_set": optional(Map(ANY)), "recipe_choices": optional(Map(ANY)),
        "recipe_deviations": List(NAME, max_length=1000), "device": optional(NAME),
        "num_workers": optional(Int(0, 4096)), "save_every": optional(Int(0, 2**53)),
        "save_seconds": optional(NUMBER), "pretrained": Bool(), "teacher_bn": optional(NAME),
        "health_every": optional(Int(0, 2**53)), "health_draws": optional(Int(0, 2**31)),
        "init_from": optional(NAME), "train_images": COUNT, "holdout_images": COUNT,
        "train_seconds": NUMBER, "seconds_per_iteration": NUMBER, "ran_on": optional(NAME),
    })),
    "dataset": optional(Obj({"root": optional(NAME), "category": optional(NAME), "layout": optional(NAME)})),
    "calibration": optional(Obj({  # rdexpert.inference.calibration.Calibration.to_dict
        "threshold": optional(SCORE), "low": optional(SCORE), "f1_threshold": optional(SCORE),
        "holdout_scores": SCORES, "synthetic_scores": SCORES, "faint_scores": SCORES,
        "source": TEXT, "rule": TEXT, "threshold_rule": TEXT, "method": TEXT, "normalization": TEXT,
        "estimates": Map(optional(ANY_NUMBER)),
    })),
    "health": optional(Obj({  # rdexpert.training.health: the final check and the reference it chose
        "final": optional(Map(MEASURE)), "reason": TEXT, "verdict": optional(NAME), "check_images": COUNT,
        "synthetic_draws": COUNT, "source": TEXT,
    })),
    # flat {name: value} (first format) or {setting: {name: value}} (rdexpert.checkpoint.folder.record_metrics)
    "metrics": optional(Map(Either((ANY_NUMBER, TEXT, Null(), Map(MEASURE))))),
    "license": optional(Obj({"id": optional(NAME), "attribution": optional(TEXT)})),
    "ood": optional(Obj({  # rdexpert.inference.ood: the check stored in ood.safetensors
        "file": Text(choices=(OOD_NAME,)), "sha256": SHA256, "threshold": NUMBER, "shrinkage": Num(0.0, 1.0),
        "features": Int(1, 2**31), "components": Int(0, 2**31), "fitted_images": COUNT,
        "calibration_images": COUNT, "calibration_distances": List(NUMBER, max_length=MAX_SCORES),
        "method": TEXT, "rule": TEXT, "source": TEXT, "score": TEXT,
    })),
    "weights_sha256": SHA256,
    "weights_dtype": Text(choices=("float32", "float16", "bfloat16")),
    "evaluation": optional(Obj()),  # the app's fine-tune: what its metrics were measured on
    "source": optional(Obj()),  # where a loaded config was read from (added by load_checkpoint)
}


def _check_calibration_order(config: dict) -> None:
    section = config.get("calibration") or {}
    threshold, low = section.get("threshold"), section.get("low")
    if threshold is not None and low is not None and not low < threshold:
        raise Violation("calibration.low", f"below calibration.threshold ({shown(threshold)})", low)


CHECKS = (_check_calibration_order,)  # rules across fields, run once every field fits its spec


def check_format(config, path) -> None:
    """That ``config`` is an rdexpert config.json of a format version this rdexpert reads (checked first: a newer
    format may have other fields, and its reader says so better than a field error)."""
    from rdexpert import __version__

    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{path} has no 'model' section; it was not written by rdexpert")
    try:
        for key in ("format", "format_version"):
            if key in config:
                SECTIONS[key].check(config[key], key)
    except Violation as violation:
        raise CheckpointError(f"{path}: {violation}") from None
    version = config.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is format {config.get('format', FORMAT)!r} version {version}; this rdexpert {__version__} "
            f"reads {FORMAT!r} up to version {FORMAT_VERSION}. Upgrade rdexpert."
        )


def validate_config(config, path) -> dict:
    """Check a parsed config.json against the schema; returns it unchanged, or raises one CheckpointError line
    naming ``path``, the field and what is allowed. Unknown top-level sections are logged, not refused."""
    check_format(config, path)
    unknown = [key for key in config if key not in SECTIONS]
    try:
        for key, value in config.items():
            SECTIONS.get(key, ANY).check(value, child("", key))
        for rule in CHECKS:
            rule(config)
    except Violation as violation:
        raise CheckpointError(f"{path}: {violation}") from None
    if unknown:
        log.warning("%s: unknown top-level section(s) %s ignored (written by a newer rdexpert?)", path,
                    ", ".join(shown(k) for k in unknown[:10]) + (" ..." if len(unknown) > 10 else ""))
    return config

