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
with its own checks (ModelConfig); the rest is this small declarative table of specs (:class:`Int`,
:class:`Num`, :class:`Text`, :class:`Bool`, :class:`List`, :class:`Obj`, :class:`Map`, :class:`Json`,
:class:`Either`), each of which checks a value and says in words what it allows.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

from rdexpert.checkpoint.format import FORMAT, FORMAT_VERSION, OOD_NAME, CheckpointError
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
MAX_TEXT = 65_536  # characters of any free-text field (a rule, a reason, an attribution, a path)
MAX_ITEMS = 1_000_000  # entries of any list or object
MAX_SCORES = 1_000_000  # stored scores (one per held-out image or synthetic anomaly)
MAX_DEPTH = 32  # nesting of free-form JSON (a newer section, a training record)
MAX_SCORE = 1e6  # raw scores are sums of cosine distances (a few units); thresholds and scores stay within +-this
MAX_NUMBER = 1e15  # any other stored number (seconds, counts, rates)
MAX_CHANNELS = 8192  # feature channels of a backbone stage (wide_resnet50_2's stride-16 stage has 1024)
MAX_SEED = 2**64 - 1
FORMAT_VERSION_LIMIT = 2**31  # a format_version above FORMAT_VERSION asks for a newer rdexpert (read_config)


class Violation(ValueError):
    """One field that breaks the schema: its dotted path and a sentence on what is allowed."""

    def __init__(self, path: str, expected: str, value):
        self.path, self.expected, self.value = path, expected, value
        super().__init__(f"{path or 'the config'} must be {expected}, got {shown(value)}")


def shown(value) -> str:
    """A short, one-line description of a JSON value for an error message."""
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)  # repr escapes newlines and control characters
    return text if len(text) <= 60 else text[:57] + "..."


def child(path: str, key: str) -> str:
    """``path.key``, or ``path['odd key']`` for a key that is not a plain name."""
    if re.fullmatch(r"[\w/\-]{1,64}", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{shown(key)}]"


def _number_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- specs: each checks a value (raising Violation) and says in words what it allows ----------------------------
class Spec:
    def check(self, value, path: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def fits_type(self, value) -> bool:
        """Whether ``value`` is of this spec's JSON type (Either reports the error of the spec of that type)."""
        return True


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Int(Spec):
    low: int
    high: int
    multiple: int = 1

    def describe(self) -> str:
        if self.multiple > 1:
            return f"a multiple of {self.multiple} in [{self.low}, {self.high}]"
        if self.high >= 2**31:  # no practical upper end
            return f"an integer >= {self.low}"
        return f"an integer in [{self.low}, {self.high}]"

    def fits_type(self, value) -> bool:
        return _is_int(value)

    def check(self, value, path: str) -> None:
        if not _is_int(value) or not self.low <= value <= self.high or value % self.multiple:
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Num(Spec):
    low: float = -MAX_NUMBER
    high: float = MAX_NUMBER
    finite: bool = True  # False: NaN and infinities pass too (records of measurements that may be undefined)

    def describe(self) -> str:
        if not self.finite:
            return "a number"
        return f"a finite number in [{_number_text(self.low)}, {_number_text(self.high)}]"

    def fits_type(self, value) -> bool:
        return _is_number(value)

    def check(self, value, path: str) -> None:
        if not _is_number(value):
            raise Violation(path, self.describe(), value)
        if self.finite and not (math.isfinite(value) and self.low <= value <= self.high):
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Text(Spec):
    max_length: int = MAX_TEXT
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_words: str = ""  # what the pattern allows, in words

    def describe(self) -> str:
        if self.choices is not None:
            return ("one of " if len(self.choices) > 1 else "") + ", ".join(repr(c) for c in self.choices)
        if self.pattern is not None:
            return self.pattern_words
        return f"a string of at most {self.max_length} characters"

    def fits_type(self, value) -> bool:
        return isinstance(value, str)

    def check(self, value, path: str) -> None:
        if not isinstance(value, str) or len(value) > self.max_length \
                or (self.choices is not None and value not in self.choices) \
                or (self.pattern is not None and not re.fullmatch(self.pattern, value)):
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Bool(Spec):
    def describe(self) -> str:
        return "true or false"

    def fits_type(self, value) -> bool:
        return isinstance(value, bool)

    def check(self, value, path: str) -> None:
        if not isinstance(value, bool):
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Null(Spec):
    def describe(self) -> str:
        return "null"

    def fits_type(self, value) -> bool:
        return value is None

    def check(self, value, path: str) -> None:
        if value is not None:
            raise Violation(path, self.describe(), value)


@dataclass(frozen=True)
class Either(Spec):
    options: tuple[Spec, ...]

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)

    def fits_type(self, value) -> bool:
        return any(o.fits_type(value) for o in self.options)

    def check(self, value, path: str) -> None:
        typed = [o for o in self.options if o.fits_type(value)]
        if len(typed) == 1:  # the one option of this JSON type explains best what is wrong deeper in (a list item)
            try:
                typed[0].check(value, path)
            except Violation as violation:
                if violation.path != path:
                    raise
                raise Violation(path, self.describe(), value) from None
            return
        for option in typed:
            try:
                option.check(value, path)
                return
            except Violation:
                pass
        raise Violation(path, self.describe(), value)


def optional(spec: Spec) -> Spec:
    """``spec`` or null."""
    return Either((spec, Null()))


@dataclass(frozen=True)
class List(Spec):
    item: Spec
    min_length: int = 0
    max_length: int = MAX_ITEMS

    def describe(self) -> str:
        if self.min_length == self.max_length:
            count = f"{self.min_length}"
        elif self.min_length == 0:
            count = f"at most {self.max_length}"
        else:
            count = f"{self.min_length} to {self.max_length}"
        return f"a list of {count} items, each {self.item.describe()}"

    def fits_type(self, value) -> bool:
        return isinstance(value, list)

    def check(self, value, path: str) -> None:
        if not isinstance(value, list) or not self.min_length <= len(value) <= self.max_length:
            raise Violation(path, self.describe(), value)
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]")


@dataclass(frozen=True)
class Json(Spec):
    """Any JSON value, nested at most ``depth`` deep, its strings and lists bounded (free-form records)."""

    depth: int = MAX_DEPTH

    def describe(self) -> str:
        return f"JSON nested at most {self.depth} deep"

    def check(self, value, path: str) -> None:
        stack = [(value, path, 0)]
        while stack:  # iterative: a deeply nested value must not exhaust the interpreter's stack
            item, where, depth = stack.pop()
            if depth > self.depth:
                raise Violation(where, f"nested less deeply (JSON at most {self.depth} levels)", item)
            if isinstance(item, dict):
                if len(item) > MAX_ITEMS:
                    raise Violation(where, f"an object of at most {MAX_ITEMS} keys", item)
                stack.extend((v, child(where, k), depth + 1) for k, v in item.items())
            elif isinstance(item, list):
                if len(item) > MAX_ITEMS:
                    raise Violation(where, f"a list of at most {MAX_ITEMS} items", item)
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
            elif isinstance(item, str):
                if len(item) > MAX_TEXT:
                    raise Violation(where, f"a string of at most {MAX_TEXT} characters", item)
            elif not (item is None or isinstance(item, (bool, int, float))):
                raise Violation(where, "a JSON value", item)


ANY = Json()


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with known fields (each optional); other keys must fit ``rest`` (None: not allowed)."""

    fields: dict = field(default_factory=dict)
    rest: Spec | None = ANY

    def describe(self) -> str:
        return "an object"

    def fits_type(self, value) -> bool:
        return isinstance(value, dict)

    def check(self, value, path: str) -> None:
        if not isinstance(value, dict):
            raise Violation(path, self.describe(), value)
        if len(value) > MAX_ITEMS:
            raise Violation(path, f"an object of at most {MAX_ITEMS} keys", value)
        for key, item in value.items():
            spec = self.fields.get(key, self.rest)
            if spec is None:
                raise Violation(child(path, key), f"absent (not a field of {path}; known: {', '.join(self.fields)})",
                                item)
            spec.check(item, child(path, key))


@dataclass(frozen=True)
class Map(Spec):
    """A JSON object whose keys are names and whose values all fit ``value``."""

    value: Spec
    max_items: int = MAX_ITEMS

    def describe(self) -> str:
        return f"an object whose values are each {self.value.describe()}"

    def fits_type(self, value) -> bool:
        return isinstance(value, dict)

    def check(self, value, path: str) -> None:
        if not isinstance(value, dict) or len(value) > self.max_items:
            raise Violation(path, self.describe(), value)
        for key, item in value.items():
            if len(key) > 256:
                raise Violation(child(path, key), "a key of at most 256 characters", key)
            self.value.check(item, child(path, key))


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

