"""Every command-line flag that more than one command (or the app) shares, defined once; train's from TrainConfig.

``rdexpert train`` has one flag per :class:`~rdexpert.training.config.TrainConfig` field, made from the field's
type, help text and allowed values, with the field's own default: a new setting is a new field, and the command
line, the API and the app's Fine-tune tab cannot disagree about a default.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields

from rdexpert.data.layouts import LAYOUTS, AnomalibFolder, parse_layout
from rdexpert.inference.onnx_backend import BACKENDS
from rdexpert.model import GATES, REFERENCES
from rdexpert.training.config import TrainConfig
from rdexpert.training.recipe import parse_overrides

CHECKPOINT_HELP = "checkpoint folder, or Hub address ORG/NAME/CATEGORY[@REVISION]"
# TrainConfig fields whose flags every data command shares (add_data_flags), not only train
DATA_FIELDS = ("data_root", "category", "out", "layout", "device")
FOLDER_FLAGS = ("normal_dir", "abnormal_dir", "mask_dir", "normal_test_dir", "normal_split_ratio")


def _help(name: str) -> str:
    return TrainConfig.__dataclass_fields__[name].metadata["help"]


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=_help("device"))


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default=BACKENDS[0], choices=list(BACKENDS),
                        help="onnxruntime: the same maps on the CPU in less time (most at small batches), after a "
                             "one-off ONNX export cached in ~/.cache/rdexpert/onnx ($RDEXPERT_CACHE); default "
                             "switches only")


def add_checkpoint(parser: argparse.ArgumentParser, help: str = CHECKPOINT_HELP) -> None:
    parser.add_argument("--checkpoint", required=True, help=help)


def add_switches(parser: argparse.ArgumentParser) -> None:
    """The inference switches: which reference the student is scored against, and the GII gate."""
    parser.add_argument("--reference", default=None, choices=list(REFERENCES),
                        help="score the student against the trained teacher or the frozen expert "
                             "(default: the checkpoint's, chosen at training by the health check)")
    parser.add_argument("--gate", default=GATES[0], choices=list(GATES), help="GII gate (docs/design.md 3.4)")


def layout_value(value: str) -> str:
    """--layout: a name of LAYOUTS, or an anomalib_folder layout string (as `rdexpert train` prints it)."""
    try:
        parse_layout(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def add_layout(parser: argparse.ArgumentParser, default: str | None = "auto", help: str | None = None) -> None:
    parser.add_argument("--layout", default=default, type=layout_value, metavar="{" + ",".join(LAYOUTS) + "}",
                        help=help or "dataset layout (default: guessed; anomalib_folder takes the folders below)")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Where the images are and where the results go: train and test."""
    parser.add_argument("--data-root", required=True, help=_help("data_root"))
    parser.add_argument("--category", default=None, help=_help("category"))
    add_layout(parser)
    folder = parser.add_argument_group("anomalib Folder layout (--layout anomalib_folder): folders relative to "
                                       "DATA_ROOT[/CATEGORY] or absolute, named as anomalib's Folder datamodule")
    folder.add_argument("--normal-dir", help="normal images (training; some are tested without --normal-test-dir)")
    folder.add_argument("--abnormal-dir", action="append", help="defective images (repeatable: one per defect type)")
    folder.add_argument("--mask-dir", help="masks named after the images (<stem>.png or <stem>_mask.png; in "
                        "MASK_DIR/<abnormal folder name>/ if that exists); without it: image-level metrics only")
    folder.add_argument("--normal-test-dir", help="normal test images (default: a seeded share of --normal-dir)")
    folder.add_argument("--normal-split-ratio", type=float,
                        help="share of --normal-dir tested when there is no --normal-test-dir (default 0.2)")
    parser.add_argument("--out", required=True, help=_help("out"))
    add_device(parser)
    parser.add_argument("--random-weights", action="store_true",
                        help="use random backbone weights (timing and tests only; results are meaningless)")


def _flag_type(annotation) -> tuple[type, int | None]:
    """(argparse type, nargs) of a TrainConfig field's annotation: ``int | None`` -> int; a tuple -> its length."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _flag_type(args[0])
    if typing.get_origin(annotation) is tuple:
        return args[0], len(args)
    return annotation, None


def add_train_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field not in DATA_FIELDS; unset flags keep the field's default (argparse.SUPPRESS)."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training settings (TrainConfig fields; default: the field's)")
    for spec in fields(TrainConfig):
        if spec.name in DATA_FIELDS:
            continue
        flag, help_text = "--" + spec.name.replace("_", "-"), spec.metadata["help"]
        if spec.default is not MISSING and spec.default is not None:
            help_text += f" (default: {spec.default})"
        kind, nargs = _flag_type(hints[spec.name])
        if spec.name == "recipe_set":
            group.add_argument(flag, action="append", metavar="NAME=VALUE", default=argparse.SUPPRESS, help=help_text)
        elif kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            choices = spec.metadata.get("choices")
            group.add_argument(flag, type=kind, nargs=nargs, default=argparse.SUPPRESS,
                               choices=list(choices) if choices else None, help=help_text)


def train_settings(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the command line set (every one but category and out), for one or many categories."""
    names = {spec.name for spec in fields(TrainConfig)} - {"category", "out"}
    settings = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if "recipe_set" in settings:
        settings["recipe_set"] = parse_overrides(settings["recipe_set"]) or None
    if getattr(args, "random_weights", False):
        settings["pretrained"] = False
    return settings


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of ``rdexpert train``'s flags (one category)."""
    return TrainConfig(**train_settings(args), category=args.category, out=args.out)


def threshold_value(value: str) -> str | float:
    if value in ("calibrated", "f1"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'calibrated', 'f1' or a raw score, got {value!r}") from None


def fold_folder_layout(args: argparse.Namespace) -> None:
    """Fold the anomalib Folder flags into ``args.layout``: one string, which the checkpoint records."""
    given = {k: getattr(args, k) for k in FOLDER_FLAGS if getattr(args, k, None) is not None}
    name = parse_layout(args.layout)[0] if hasattr(args, "normal_dir") else None
    if name == "anomalib_folder" and "?" in args.layout:
        if given:
            raise ValueError("give the folders either in the --layout string or as --normal-dir ... flags, not both")
    elif name == "anomalib_folder" or (given and name == "auto"):
        if "normal_dir" not in given:
            raise ValueError("the anomalib_folder layout needs --normal-dir (and --abnormal-dir to test)")
        args.layout = AnomalibFolder(**given).layout
    elif given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags} belong to --layout anomalib_folder, not --layout {name}")
