"""The commands that train and check checkpoints: train, test, calibrate, fit-ood, push."""

from __future__ import annotations

import shlex
from pathlib import Path

from rdexpert.cli.console import check_output
from rdexpert.cli.flags import train_config_from_args, train_settings


def run_train(args) -> None:
    from rdexpert.training.categories import is_many, parse_categories, train_many
    from rdexpert.training.distributed import Worker
    from rdexpert.training.loop import train

    settings = train_settings(args)
    worker = Worker.from_env()
    if is_many(args.category):
        if args.distributed == "ddp":
            raise ValueError("--distributed ddp trains one category on every rank; with several categories the "
                             "ranks share the categories instead (leave out --distributed)")
        check_output(args.out)
        rows = train_many(settings, args.out, parse_categories(args.category, args.data_root), test=not args.no_test)
        if worker.is_main:
            print(f"{len(rows)} categories in {args.out}; summary: {Path(args.out) / 'summary.md'}")
        return
    if worker.world_size > 1 and args.distributed != "ddp":
        raise ValueError(f"started by torchrun with {worker.world_size} processes but one category: add "
                         "--distributed ddp to train it on all of them, or give several categories (--category a,b / all)")
    config = train_config_from_args(args)
    check_output(config.out)
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


def run_calibrate(args) -> None:
    from rdexpert.training.calibrate_threshold import recalibrate_checkpoint

    check_output(args.checkpoint, "checkpoint folder (its config.json is updated)")
    section = recalibrate_checkpoint(args.checkpoint, args.data_root, args.category, args.layout, args.textures,
                                     args.device)
    e = section["estimates"]
    print(f"threshold {section['threshold']:.4f} ({section['method']}): {section['rule']}")
    print(f"held-out normal images flagged: {e['normal_flagged']} of {e['normal_images']} (95 % upper bound of the "
          f"false-positive rate {100 * e['false_positive_rate_upper95']:.0f} %)"
          + (f"; synthetic anomalies missed: {e['synthetic_missed']} of {e['synthetic_anomalies']}"
             if "synthetic_anomalies" in e else ""))


def run_test(args) -> None:
    from rdexpert.checkpoint.pretrained import Checkpoint
    from rdexpert.data import list_samples
    from rdexpert.evaluation.metrics import metrics_table
    from rdexpert.evaluation.record import evaluate_checkpoint, split_record
    from rdexpert.runtime import resolve_device

    check_output(args.out)
    if args.save_metrics and Path(args.checkpoint).is_dir():
        check_output(args.checkpoint, "checkpoint folder (--save-metrics writes its config.json)")
    device = resolve_device(args.device)
    checkpoint = Checkpoint.from_pretrained(args.checkpoint, pretrained_expert=False if args.random_weights else None,
                                            map_location=device)
    if args.save_metrics and not checkpoint.is_local:
        raise ValueError("--save-metrics writes into the checkpoint's config.json, so it needs a local checkpoint "
                         f"folder, not the Hub address {args.checkpoint}")
    category = args.category or checkpoint.info.category
    samples = list_samples(args.data_root, category, "test", layout=args.layout)
    result = evaluate_checkpoint(checkpoint, samples, device=device, reference=args.reference, gate=args.gate,
                                 report=args.out, progress=True,
                                 record=split_record(args.data_root, category) if args.save_metrics else None)
    name = f"{checkpoint.info.variant} ({category})"
    print(metrics_table({name: result.metrics}))
    print(f"{len(result.scores)} images in {result.seconds:.1f} s; metrics.json, metrics.md and overlays/ in "
          f"{args.out}")
    if args.save_metrics:
        setting = f"{args.reference or checkpoint.info.default_reference}/{args.gate}"
        print(f"metrics ({setting}) saved into {checkpoint.folder / 'config.json'}")


def run_fit_ood(args) -> None:
    from rdexpert.inference.ood import fit_checkpoint_ood

    check_output(args.checkpoint, "checkpoint folder (ood.safetensors and config.json are written)")
    ood = fit_checkpoint_ood(args.checkpoint, args.data_root, args.device)
    if ood is None:
        raise ValueError("too few normal training images to fit the out-of-distribution check")
    info = ood.info
    print(f"out-of-distribution threshold {ood.threshold:.3f} ({info['rule']}; {info['source']}); fitted on "
          f"{info['fitted_images']} images, {info['components']} of {info['features']} dimensions kept; "
          f"written to {Path(args.checkpoint) / 'ood.safetensors'} and config.json")


def run_push(args) -> None:
    from rdexpert.hub.publish import push_to_hub, stage

    if args.dry_run:
        folder = stage(args.checkpoint, args.dry_run, args.repo, args.category, args.license, args.dataset_id)
        staged = sorted(str(p.relative_to(args.dry_run)) for p in Path(args.dry_run).rglob("*") if p.is_file())
        print(f"staged {staged} in {args.dry_run} (what {args.repo}/{folder or ''} would get); nothing was uploaded")
        return
    url = push_to_hub(args.checkpoint, args.repo, args.category, args.license, private=args.private,
                      dataset_id=args.dataset_id)
    print(f"pushed: {url}")

