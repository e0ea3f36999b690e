"""The ``rdexpert`` command's parser and entry point: every subcommand and how an error ends (one line, exit 2)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

from rdexpert.cli import DESCRIPTION
from rdexpert.cli.commands import run_calibrate, run_fit_ood, run_push, run_test, run_train
from rdexpert.cli.console import printable
from rdexpert.cli.export import run_export
from rdexpert.cli.flags import (
    add_backend,
    add_checkpoint,
    add_data_flags,
    add_device,
    add_layout,
    add_switches,
    add_train_config_flags,
    fold_folder_layout,
    threshold_value,
)
from rdexpert.cli.predict import run_predict
from rdexpert.inference.export import EXPORTERS

DEBUG_ENV = "RDEXPERT_DEBUG"  # set to 1 for full tracebacks instead of one-line errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdexpert", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one category, or several (--category all / a,b,c; under "
                                              "torchrun the processes share them)")
    add_data_flags(train)
    add_train_config_flags(train)
    train.add_argument("--distributed", default="none", choices=["none", "ddp"],
                       help="under torchrun: ddp trains ONE category on all processes (DistributedDataParallel; "
                            "the global batch stays the preset's). Several categories need no flag: the processes "
                            "share them")
    train.add_argument("--no-test", action="store_true",
                       help="with several categories: skip testing each on its test split after training")
    train.set_defaults(run=run_train)

    test = commands.add_parser("test", help="evaluate a checkpoint on a test split")
    add_data_flags(test)
    add_checkpoint(test)
    add_switches(test)
    test.add_argument("--save-metrics", action="store_true",
                      help="write the metrics into the checkpoint's config.json under 'metrics' (and the F1-optimal "
                           "threshold under 'calibration'); needs a local checkpoint folder")
    test.set_defaults(run=run_test)

    predict = commands.add_parser("predict", help="score images: predictions.csv and overlay PNGs")
    add_checkpoint(predict)
    predict.add_argument("--input", required=True, nargs="+", help="image files and/or folders (all images inside, "
                         "subfolders included; unreadable files are skipped and reported)")
    predict.add_argument("--out", required=True, help="output folder")
    add_device(predict)
    predict.add_argument("--batch-size", type=int, default=16)
    add_backend(predict)
    predict.add_argument("--threshold", type=threshold_value, default="calibrated",
                         help="'calibrated' (normal images, default), 'f1' (stored by test --save-metrics) or a raw score")
    predict.add_argument("--no-overlays", action="store_true", help="write only predictions.csv")
    predict.add_argument("--no-ood", action="store_true",
                         help="skip the out-of-distribution check (its columns are left empty): with the teacher "
                              "reference it costs one expert forward per image (bench/results/ood.md)")
    add_switches(predict)
    predict.set_defaults(run=run_predict)

    export = commands.add_parser("export", help="export a checkpoint to ONNX (checked against PyTorch with ONNX "
                                                "Runtime), or as a float16 checkpoint folder (half the size)")
    add_checkpoint(export)
    export.add_argument("--format", default="onnx", choices=["onnx", "fp16"])
    export.add_argument("--out", required=True, help="output file, e.g. model.onnx; for fp16 a folder")
    export.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 18; below 18 the TorchScript exporter writes it)")
    export.add_argument("--exporter", default="auto", choices=list(EXPORTERS),
                        help="auto (default): torch.onnx's dynamo exporter, the TorchScript one if that fails")
    export.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime comparison")
    add_switches(export)
    export.set_defaults(run=run_export)

    calibrate = commands.add_parser(
        "calibrate", help="re-calibrate a checkpoint's threshold on its held-out normal images + synthetic anomalies")
    add_checkpoint(calibrate, "local checkpoint folder (its config.json is updated)")
    calibrate.add_argument("--data-root", default=None, help="its training data (default: the path it recorded)")
    calibrate.add_argument("--category", default=None)
    add_layout(calibrate, default=None, help="default: the layout the checkpoint recorded")
    calibrate.add_argument("--textures", default=None, help="texture folder (default: the one it trained with)")
    add_device(calibrate)
    calibrate.set_defaults(run=run_calibrate)

    fit_ood = commands.add_parser(
        "fit-ood", help="add the out-of-distribution check to a checkpoint made before it existed (its training data)")
    add_checkpoint(fit_ood, "local checkpoint folder (ood.safetensors is added)")
    fit_ood.add_argument("--data-root", default=None, help="its training data (default: the path it recorded)")
    add_device(fit_ood)
    fit_ood.set_defaults(run=run_fit_ood)

    push = commands.add_parser("push", help="publish a checkpoint, or a run of several categories, to a Hub model repo")
    add_checkpoint(push, "local checkpoint folder (one category), or a run folder OUT/<category>/... (all of its "
                         "categories in one commit, with a repo card listing their test metrics)")
    push.add_argument("--repo", required=True, help="Hub model repo ORG/NAME")
    push.add_argument("--category", default=None,
                      help="subfolder name of a single checkpoint (default: the checkpoint's category)")
    push.add_argument("--license", default=None,
                      help="license id of the weights, e.g. cc-by-nc-sa-4.0 (default: config.json license.id)")
    push.add_argument("--dataset-id", default=None, metavar="ORG/NAME",
                      help="the Hub dataset the weights were trained on, for the card's `datasets` (default: none; "
                           "a local folder name is never used)")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--dry-run", metavar="DIR", default=None,
                      help="only write what would be uploaded (config, weights, model cards) into DIR (new or empty)")
    push.set_defaults(run=run_push)
    return parser


def _describe(error: BaseException) -> str:
    """One line for an error: an OSError as its reason and file, not its errno tuple."""
    if isinstance(error, OSError) and error.strerror:
        message = error.strerror + (f": '{error.filename}'" if error.filename is not None else "")
    else:
        message = str(error) or type(error).__name__
    return printable(" ".join(message.split()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    with warnings.catch_warnings():
        # warnings (e.g. "too few images to hold any out") as one plain line each
        warnings.showwarning = lambda message, category, *_, **__: print(
            printable(f"rdexpert {args.command}: warning: {message}"), file=sys.stderr)
        try:
            fold_folder_layout(args)
            args.run(args)
        except KeyboardInterrupt:
            print("interrupted; run the same command again to resume", file=sys.stderr)
            return 130
        except (OSError, ValueError, RuntimeError) as error:  # OSError: read-only or full disk, missing files ...
            if debug:
                traceback.print_exc()
            print(f"rdexpert {args.command}: error: {_describe(error)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
