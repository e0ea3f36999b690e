"""The ``rdexpert`` command: train, test, predict, export and push, in the vocabulary anomalib users know.

Wherever a checkpoint is taken (``--checkpoint``) it may be a local folder or a
Hugging Face Hub reference ``ORG/NAME/CATEGORY[@REVISION]`` (see rdexpert.hub.resolve).
An error is one line (``rdexpert COMMAND: error: ...``, exit status 2), checked before
any compute where it can be (an output folder that cannot be written or is full);
set RDEXPERT_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
import warnings
from pathlib import Path

from rdexpert.data.layouts import LAYOUTS, AnomalibFolder, parse_layout
from rdexpert.inference.export import EXPORTERS
from rdexpert.model import GATES, REFERENCES, VARIANTS
from rdexpert.synthesis.foreground import FOREGROUND_METHODS
from rdexpert.training.loop import PRESETS, TEACHER_BN_MODES
from rdexpert.training.recipe import CHOICES, RECIPES

CHECKPOINT_HELP = "checkpoint folder, or Hub reference ORG/NAME/CATEGORY[@REVISION]"
DEBUG_ENV = "RDEXPERT_DEBUG"  # set to 1 for full tracebacks instead of one-line errors


def _writable(folder, what: str = "output folder") -> None:
    """Refuse a read-only, impossible or full output location before any model is loaded or image read."""
    from rdexpert.checkpoint.io import check_writable

    check_writable(folder, what=what)


def _display(text) -> str:
    """Text that always encodes: the bytes of a file name that are not UTF-8 (a Latin-1 name ...) appear as \\xNN."""
    text = str(text)
    try:
        return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that does not stand for a byte
        return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _train(args) -> None:
    from rdexpert.training.categories import is_many, parse_categories, train_many
    from rdexpert.training.distributed import Worker
    from rdexpert.training.loop import TrainConfig, train
    from rdexpert.training.recipe import parse_overrides

    settings = dict(
        data_root=args.data_root, variant=args.variant, preset=args.preset,
        backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size, iterations=args.iterations,
        seed=args.seed, textures=args.textures, foreground=args.foreground, device=args.device,
        pretrained=not args.random_weights, layout=args.layout, teacher_bn=args.teacher_bn,
        health_every=args.health_every, recipe=args.recipe, recipe_set=parse_overrides(args.recipe_set) or None,
        init_from=args.init_from,
    )
    worker = Worker.from_env()
    if is_many(args.category):
        if args.distributed == "ddp":
            raise ValueError("--distributed ddp trains one category on every rank; with several categories the "
                             "ranks share the categories instead (leave out --distributed)")
        _writable(args.out)
        rows = train_many(settings, args.out, parse_categories(args.category, args.data_root), test=not args.no_test)
        if worker.is_main:
            print(f"{len(rows)} categories in {args.out}; summary: {Path(args.out) / 'summary.md'}")
        return
    if worker.world_size > 1 and args.distributed != "ddp":
        raise ValueError(f"started by torchrun with {worker.world_size} processes but one category: add "
                         "--distributed ddp to train it on all of them, or give several categories (--category a,b / all)")
    config = TrainConfig(**settings, category=args.category, out=args.out)
    _writable(config.out)
    out = train(config, distributed_mode=args.distributed)
    if not worker.is_main:
        return
    print(f"checkpoint saved to {out}")
    command = ["rdexpert", "test", "--checkpoint", str(out), "--data-root", str(args.data_root)]
    if args.category is not None:
        command += ["--category", args.category]
    if args.layout != "auto":
        command += ["--layout", args.layout]
    print(f"next: {shlex.join(command + ['--out', str(Path(out) / 'test')])}")


def _calibrate(args) -> None:
    from rdexpert.training.calibrate_threshold import recalibrate_checkpoint

    _writable(args.checkpoint, "checkpoint folder (its config.json is updated)")
    section = recalibrate_checkpoint(args.checkpoint, args.data_root, args.category, args.layout, args.textures,
                                     args.device)
    e = section["estimates"]
    print(f"threshold {section['threshold']:.4f} ({section['method']}): {section['rule']}")
    print(f"held-out normal images flagged: {e['normal_flagged']} of {e['normal_images']} (95 % upper bound of the "
          f"false-positive rate {100 * e['false_positive_rate_upper95']:.0f} %)"
          + (f"; synthetic anomalies missed: {e['synthetic_missed']} of {e['synthetic_anomalies']}"
             if "synthetic_anomalies" in e else ""))


def _test(args) -> None:
    from rdexpert.checkpoint.folder import CheckpointInfo, load_checkpoint, record_metrics
    from rdexpert.evaluation.evaluate import evaluate_split, measured_metrics, write_report
    from rdexpert.evaluation.metrics import metrics_table
    from rdexpert.runtime import resolve_device

    _writable(args.out)
    if args.save_metrics and Path(args.checkpoint).is_dir():
        _writable(args.checkpoint, "checkpoint folder (--save-metrics writes its config.json)")
    device = resolve_device(args.device)
    model, config = load_checkpoint(args.checkpoint, pretrained_expert=False if args.random_weights else None,
                                    map_location=device)
    if args.save_metrics and config["source"]["type"] != "local":
        raise ValueError("--save-metrics writes into the checkpoint's config.json, so it needs a local checkpoint "
                         f"folder, not the Hub reference {args.checkpoint}")
    info = CheckpointInfo.from_config(config)
    category = args.category or info.category
    # prepared as the Predictor runs it (BatchNorm folded): its speed, the same maps within float rounding
    result = evaluate_split(model.prepare_for_inference(), args.data_root, category, device=device, layout=args.layout,
                            reference=args.reference, gate=args.gate)
    name = f"{info.variant} ({category})"
    out = write_report(result, args.out, name, info.threshold)
    print(metrics_table({name: result.metrics}))
    print(f"{len(result.scores)} images in {result.seconds:.1f} s; metrics.json, metrics.md and overlays/ in {out}")
    if args.save_metrics:
        setting = f"{args.reference or info.default_reference}/{args.gate}"
        measured = measured_metrics(result, args.data_root, category)
        # the F1 threshold is an operating point of the default setting only
        f1 = result.metrics.get("f1_threshold") if setting == info.default_setting else None
        record_metrics(config["source"]["path"], setting, measured, f1_threshold=f1)
        print(f"metrics ({setting}) saved into {Path(config['source']['path']) / 'config.json'}")


def _threshold(value: str) -> str | float:
    if value in ("calibrated", "f1"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'calibrated', 'f1' or a raw score, got {value!r}") from None


def _predict_inputs(entries: list[str], out: Path) -> list[tuple[Path, str]]:
    """(image file, overlay name) for every ``--input``, checked before any model is loaded.

    Folders are searched recursively (``good/``, ``defect/`` ...): the overlay name keeps the path inside
    the folder, and an earlier run's ``overlays/`` in there is left out. A missing input is an error.
    """
    from rdexpert.data import list_images

    overlays = (out / "overlays").resolve()
    items = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            files = [f for f in list_images(path, recursive=True) if not f.resolve().is_relative_to(overlays)]
            if not files:
                raise ValueError(f"folder {path} holds no images (.png, .jpg, .bmp, .tif ...), in no subfolder either")
            items += [(f, f.relative_to(path).with_suffix("").as_posix()) for f in files]
        elif path.exists():
            items.append((path, path.stem))
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    return items


def _predict(args) -> None:
    import csv
    import io

    from rdexpert.checkpoint.io import atomic_write
    from rdexpert.evaluation.plots import overlay, save_png
    from rdexpert.inference.predictor import Predictor

    out = Path(args.out)
    items = _predict_inputs(args.input, out)
    _writable(out)
    names = {}
    for file, name in items:
        names.setdefault(str(file), name)
    predictor = Predictor.from_pretrained(args.checkpoint, device=args.device, threshold=args.threshold,
                                          backend=args.backend)
    if args.no_ood:
        predictor.ood = None
    rows, used, skipped, reported = [], set(), [], 0

    def report_skipped():
        nonlocal reported
        for path, error in skipped[reported:]:
            print(_display(f"rdexpert predict: warning: skipped {path}: {error}"), file=sys.stderr)
        reported = len(skipped)

    files = [file for file, _ in items]
    for prediction in predictor.iter_predict(files, args.reference, args.gate, args.batch_size, skipped=skipped):
        report_skipped()
        stem = name = names[prediction.path]
        copy = 0
        while name in used:  # the same file name in two input folders
            copy += 1
            name = f"{stem}_{copy}"
        used.add(name)
        if not args.no_overlays:  # calibrated map: the white contour is the decision boundary (0.5)
            picture = overlay(prediction.image, predictor.map_to_normalized(prediction.anomaly_map), 0.0, 1.0, 0.5)
            save_png(out / "overlays" / f"{name}.png", picture)
        rows.append([_display(prediction.path), f"{prediction.score:.6f}", f"{prediction.normalized_score:.4f}",
                     prediction.label, *_ood_cells(prediction)])
    report_skipped()
    if not rows:
        raise ValueError(f"none of the {len(skipped)} input images could be read (see the warnings above); "
                         "nothing was written")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["file", "score", "normalized_score", "label", "out_of_distribution", "ood_score"])
    writer.writerows(rows)
    atomic_write(out / "predictions.csv", lambda tmp: Path(tmp).write_text(text.getvalue(), encoding="utf-8"))
    flagged = sum(row[3] for row in rows)
    print(_display(f"{len(rows)} images, {flagged} anomalous (raw threshold {predictor.threshold:.4f}); "
                   f"predictions.csv{'' if args.no_overlays else ' and overlays/'} in {out}"))
    if not args.no_ood:
        _warn_out_of_distribution(predictor, [row[4] == 1 for row in rows])
    if skipped:
        shown = ", ".join(str(path) for path, _ in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(_display(f"rdexpert predict: warning: scored {len(rows)}, skipped {len(skipped)} unreadable: {shown}"),
              file=sys.stderr)


def _ood_cells(prediction) -> tuple:
    """(out_of_distribution 1/0, ood_score) for predictions.csv; both empty when the checkpoint has no check."""
    if prediction.out_of_distribution is None:
        return "", ""
    return int(prediction.out_of_distribution), f"{prediction.ood_score:.3f}"


def _warn_out_of_distribution(predictor, flags: list) -> None:
    from rdexpert.checkpoint.folder import CheckpointInfo

    product = CheckpointInfo.from_config(predictor.config).category or "the trained product"
    if predictor.ood is None:
        print(f"rdexpert predict: note: this checkpoint has no out-of-distribution check (columns left empty); "
              "add one with `rdexpert fit-ood`", file=sys.stderr)
    elif any(flags):
        print(_display(f"rdexpert predict: warning: {sum(flags)} of {len(flags)} images do not look like {product} "
                       "images the model was trained on (out_of_distribution=1): their verdicts are not meaningful"),
              file=sys.stderr)


def _fit_ood(args) -> None:
    from rdexpert.inference.ood import fit_checkpoint_ood

    _writable(args.checkpoint, "checkpoint folder (ood.safetensors and config.json are written)")
    ood = fit_checkpoint_ood(args.checkpoint, args.data_root, args.device)
    if ood is None:
        raise ValueError("too few normal training images to fit the out-of-distribution check")
    info = ood.info
    print(f"out-of-distribution threshold {ood.threshold:.3f} ({info['rule']}; {info['source']}); fitted on "
          f"{info['fitted_images']} images, {info['components']} of {info['features']} dimensions kept; "
          f"written to {Path(args.checkpoint) / 'ood.safetensors'} and config.json")


def _export_fp16(args) -> None:
    import torch

    from rdexpert.checkpoint.folder import compact_checkpoint, load_checkpoint
    from rdexpert.hub.resolve import resolve_checkpoint

    _writable(args.out)
    out = compact_checkpoint(resolve_checkpoint(args.checkpoint)[0], args.out)
    size_mib = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    print(f"float16 checkpoint written to {out} ({size_mib:.1f} MiB in all)")
    if args.no_verify:
        return
    (full, _), (half, _) = load_checkpoint(args.checkpoint), load_checkpoint(out)
    images = torch.rand(2, 3, full.config.image_size, full.config.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = full(images).maps, half(images).maps
    print(f"max |float16 - float32| on the anomaly map: {(a.fused - b.fused).abs().max().item():.2e} "
          f"(maps reach {a.fused.max().item():.2f}); on the score: {(a.score - b.score).abs().max().item():.2e}")


def _export(args) -> None:
    import torch

    from rdexpert.checkpoint.folder import load_checkpoint
    from rdexpert.inference.export import TOLERANCE, compare_with_onnxruntime, export_onnx, onnx_metadata

    if args.format == "fp16":
        return _export_fp16(args)
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give the file to write, e.g. {Path(args.out) / 'model.onnx'}")
    _writable(Path(args.out).parent)
    model, config = load_checkpoint(args.checkpoint)
    path = export_onnx(model, args.out, config, args.reference, args.gate, args.opset, args.exporter)
    metadata = onnx_metadata(path)
    print(f"ONNX model written to {path} ({path.stat().st_size / 2**20:.1f} MiB; {metadata['exporter']} exporter, "
          f"opset {metadata['opset']})")
    if args.no_verify:
        return
    size = model.config.image_size
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    differences = compare_with_onnxruntime(model, path, images, args.reference, args.gate)
    print("max |ONNX Runtime - PyTorch|: " + ", ".join(f"{k} {v:.2e}" for k, v in differences.items()))
    if max(differences.values()) > TOLERANCE:
        raise RuntimeError(f"the exported model differs from PyTorch by more than {TOLERANCE:g}")


def _push(args) -> None:
    from rdexpert.hub.publish import push_to_hub, stage

    if args.dry_run:
        folder = stage(args.checkpoint, args.dry_run, args.repo, args.category, args.license)
        staged = sorted(str(p.relative_to(args.dry_run)) for p in Path(args.dry_run).rglob("*") if p.is_file())
        print(f"staged {staged} in {args.dry_run} (what {args.repo}/{folder or ''} would get); nothing was uploaded")
        return
    url = push_to_hub(args.checkpoint, args.repo, args.category, args.license, private=args.private)
    print(f"pushed: {url}")


def _layout(value: str) -> str:
    """--layout: a name of LAYOUTS, or an anomalib_folder layout string (as `rdexpert train` prints it)."""
    try:
        parse_layout(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


FOLDER_FLAGS = ("normal_dir", "abnormal_dir", "mask_dir", "normal_test_dir", "normal_split_ratio")


def _folder_layout(args) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdexpert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--data-root", required=True,
                       help="dataset root (MVTec-style, MVTec AD 2, VisA, anomalib Folder, or a plain folder)")
        p.add_argument("--category", default=None, help="category folder under the root (e.g. metal_plate); train also takes "
                       "'all' or a comma-separated list: one checkpoint per category in OUT/<category>")
        p.add_argument("--layout", default="auto", type=_layout, metavar="{" + ",".join(LAYOUTS) + "}",
                       help="dataset layout (default: guessed; anomalib_folder takes the folders below)")
        folder = p.add_argument_group("anomalib Folder layout (--layout anomalib_folder): folders relative to "
                                      "DATA_ROOT[/CATEGORY] or absolute, named as anomalib's Folder datamodule")
        folder.add_argument("--normal-dir", help="normal images (training; some are tested without --normal-test-dir)")
        folder.add_argument("--abnormal-dir", action="append",
                            help="defective images (repeatable: one per defect type)")
        folder.add_argument("--mask-dir", help="masks named after the images (<stem>.png or <stem>_mask.png; in "
                            "MASK_DIR/<abnormal folder name>/ if that exists); without it: image-level metrics only")
        folder.add_argument("--normal-test-dir", help="normal test images (default: a seeded share of --normal-dir)")
        folder.add_argument("--normal-split-ratio", type=float,
                            help="share of --normal-dir tested when there is no --normal-test-dir (default 0.2)")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
        p.add_argument("--random-weights", action="store_true",
                       help="use random backbone weights (timing and tests only; results are meaningless)")

    def switches(p):
        p.add_argument("--reference", default=None, choices=list(REFERENCES),
                       help="score the student against the trained teacher or the frozen expert "
                            "(default: the checkpoint's, chosen at training by the health check)")
        p.add_argument("--gate", default="gated", choices=list(GATES), help="GII gate (DESIGN.md 3.4)")

    train = commands.add_parser("train", help="train one category, or several (--category all / a,b,c; under "
                                              "torchrun the processes share them)")
    common(train)
    train.add_argument("--variant", default="full", choices=sorted(VARIANTS))
    train.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                       help="; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    train.add_argument("--backbone", default=None, help="any timm CNN with stride-4/8/16 features")
    train.add_argument("--iterations", type=int, default=None)
    train.add_argument("--image-size", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--textures", default=None, help="folder of anomaly textures (e.g. DTD images/); default procedural")
    train.add_argument("--foreground", default=None, choices=list(FOREGROUND_METHODS),
                       help="foreground mask for synthetic defects; default per category")
    train.add_argument("--seed", type=int, default=111)
    train.add_argument("--teacher-bn", default="batch", choices=list(TEACHER_BN_MODES),
                       help="batch: the teacher's BatchNorm in training mode, as the authors' released code "
                            "(default); frozen: BatchNorm keeps the expert's statistics")
    train.add_argument("--health-every", type=int, default=None,
                       help="iterations between health checks on held-out normal images + synthetic defects "
                            "(default: iterations // 8; 0: only at the end)")
    train.add_argument("--distributed", default="none", choices=["none", "ddp"],
                       help="under torchrun: ddp trains ONE category on all processes (DistributedDataParallel; "
                            "the global batch stays the preset's). Several categories need no flag: the processes "
                            "share them")
    train.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                       help="warm start: begin from this checkpoint's trained teacher and student (folder or Hub "
                            "reference; same backbone) instead of the expert and a fresh student")
    train.add_argument("--no-test", action="store_true",
                       help="with several categories: skip testing each on its test split after training")
    train.add_argument("--recipe", default="improved", choices=sorted(RECIPES),
                       help="reference: the authors' released training and scoring, step for step; improved (default): "
                            "keeps the deviations measured better by bench/recipe.py (README 'Reproducing the paper')")
    train.add_argument("--recipe-set", action="append", metavar="NAME=VALUE",
                       help=f"switch one choice of the recipe (repeatable); NAME one of {', '.join(CHOICES)}")
    train.set_defaults(run=_train)

    test = commands.add_parser("test", help="evaluate a checkpoint on a test split")
    common(test)
    test.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    switches(test)
    test.add_argument("--save-metrics", action="store_true",
                      help="write the metrics into the checkpoint's config.json under 'metrics' (and the F1-optimal "
                           "threshold under 'calibration'); needs a local checkpoint folder")
    test.set_defaults(run=_test)

    predict = commands.add_parser("predict", help="score images: predictions.csv and overlay PNGs")
    predict.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    predict.add_argument("--input", required=True, nargs="+", help="image files and/or folders (all images inside, subfolders included; unreadable files are skipped and reported)")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    predict.add_argument("--batch-size", type=int, default=16)
    predict.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                         help="onnxruntime: the same maps on the CPU in less time (most at small batches), after a "
                              "one-off ONNX export cached in ~/.cache/rdexpert/onnx ($RDEXPERT_CACHE); default switches only")
    predict.add_argument("--threshold", type=_threshold, default="calibrated",
                         help="'calibrated' (normal images, default), 'f1' (stored by test --save-metrics) or a raw score")
    predict.add_argument("--no-overlays", action="store_true", help="write only predictions.csv")
    predict.add_argument("--no-ood", action="store_true",
                         help="skip the out-of-distribution check (its columns are left empty): with the teacher "
                              "reference it costs one expert forward per image (bench/results/ood.md)")
    switches(predict)
    predict.set_defaults(run=_predict)

    export = commands.add_parser("export", help="export a checkpoint to ONNX (checked against PyTorch with ONNX Runtime), "
                                                 "or as a float16 checkpoint folder (half the size)")
    export.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    export.add_argument("--format", default="onnx", choices=["onnx", "fp16"])
    export.add_argument("--out", required=True, help="output file, e.g. model.onnx; for fp16 a folder")
    export.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 18; below 18 the TorchScript exporter writes it)")
    export.add_argument("--exporter", default="auto", choices=list(EXPORTERS),
                        help="auto (default): torch.onnx's dynamo exporter, the TorchScript one if that fails")
    export.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime comparison")
    switches(export)
    export.set_defaults(run=_export)

    calibrate = commands.add_parser(
        "calibrate", help="re-calibrate a checkpoint's threshold on its held-out normal images + synthetic anomalies")
    calibrate.add_argument("--checkpoint", required=True, help="local checkpoint folder (its config.json is updated)")
    calibrate.add_argument("--data-root", default=None, help="its training data (default: the path it recorded)")
    calibrate.add_argument("--category", default=None)
    calibrate.add_argument("--layout", default=None, type=_layout, metavar="{" + ",".join(LAYOUTS) + "}",
                           help="default: the layout the checkpoint recorded")
    calibrate.add_argument("--textures", default=None, help="texture folder (default: the one it trained with)")
    calibrate.add_argument("--device", default="auto")
    calibrate.set_defaults(run=_calibrate)

    fit_ood = commands.add_parser(
        "fit-ood", help="add the out-of-distribution check to a checkpoint made before it existed (its training data)")
    fit_ood.add_argument("--checkpoint", required=True, help="local checkpoint folder (ood.safetensors is added)")
    fit_ood.add_argument("--data-root", default=None, help="its training data (default: the path it recorded)")
    fit_ood.add_argument("--device", default="auto")
    fit_ood.set_defaults(run=_fit_ood)

    push = commands.add_parser("push", help="publish a checkpoint, or a run of several categories, to a Hub model repo")
    push.add_argument("--checkpoint", required=True,
                      help="local checkpoint folder (one category), or a run folder OUT/<category>/... (all of its "
                           "categories in one commit, with a repo card listing their test metrics)")
    push.add_argument("--repo", required=True, help="Hub model repo ORG/NAME")
    push.add_argument("--category", default=None,
                      help="subfolder name of a single checkpoint (default: the checkpoint's category)")
    push.add_argument("--license", default=None,
                      help="license id of the weights, e.g. cc-by-nc-sa-4.0 (default: config.json license.id)")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--dry-run", metavar="DIR", default=None,
                      help="only write what would be uploaded (config, weights, model cards) into DIR (new or empty)")
    push.set_defaults(run=_push)
    return parser


def _describe(error: BaseException) -> str:
    """One line for an error: an OSError as its reason and file, not its errno tuple."""
    if isinstance(error, OSError) and error.strerror:
        message = error.strerror + (f": '{error.filename}'" if error.filename is not None else "")
    else:
        message = str(error) or type(error).__name__
    return _display(" ".join(message.split()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    with warnings.catch_warnings():
        # warnings (e.g. "too few images to hold any out") as one plain line each
        warnings.showwarning = lambda message, category, *_, **__: print(
            _display(f"rdexpert {args.command}: warning: {message}"), file=sys.stderr)
        try:
            _folder_layout(args)
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
