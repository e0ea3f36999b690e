"""The ``rdexpert`` command: train and test, in the vocabulary anomalib users know."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .model import VARIANTS
from .train import PRESETS


def _train(args) -> None:
    from .train import TrainConfig, train

    config = TrainConfig(
        data_root=args.data_root, category=args.category, out=args.out, variant=args.variant, preset=args.preset,
        backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size, iterations=args.iterations,
        seed=args.seed, textures=args.textures, foreground=args.foreground, device=args.device,
        pretrained=not args.random_weights, layout=args.layout,
    )
    out = train(config)
    print(f"checkpoint saved to {out}")
    print(f"next: rdexpert test --checkpoint {out} --data-root {args.data_root} --category {args.category} --out {out}/test")


def _test(args) -> None:
    from .checkpoint import load_checkpoint
    from .evaluate import evaluate_split, markdown_table, write_report
    from .train import resolve_device

    device = resolve_device(args.device)
    model, config = load_checkpoint(args.checkpoint, pretrained_expert=not args.random_weights, map_location=device)
    category = args.category or config.get("dataset", {}).get("category")
    result = evaluate_split(model, args.data_root, category, device=device, layout=args.layout,
                            reference=args.reference, gate=args.gate)
    threshold = (config.get("calibration") or {}).get("threshold")
    out = write_report(result, args.out, f"{config['model']['variant']} ({category})", threshold)
    print(markdown_table({f"{config['model']['variant']} ({category})": result.metrics}))
    print(f"{len(result.scores)} images in {result.seconds:.1f} s; metrics.json, metrics.md and overlays/ in {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdexpert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--data-root", required=True, help="dataset root (MVTec layout, VisA, or a plain folder)")
        p.add_argument("--category", default=None, help="category folder under the root (e.g. metal_plate)")
        p.add_argument("--layout", default="auto", choices=["auto", "mvtec", "visa", "folder"])
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
        p.add_argument("--random-weights", action="store_true",
                       help="use random backbone weights (timing and tests only; results are meaningless)")

    train = commands.add_parser("train", help="train one category")
    common(train)
    train.add_argument("--variant", default="full", choices=sorted(VARIANTS))
    train.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                       help="; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    train.add_argument("--backbone", default=None, help="any timm CNN with stride-4/8/16 features")
    train.add_argument("--iterations", type=int, default=None)
    train.add_argument("--image-size", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--textures", default=None, help="folder of anomaly textures (e.g. DTD images/); default procedural")
    train.add_argument("--foreground", default=None, choices=["auto", "none", "otsu", "otsu_inverse", "grabcut"],
                       help="foreground mask for synthetic defects; default per category")
    train.add_argument("--seed", type=int, default=111)
    train.set_defaults(run=_train)

    test = commands.add_parser("test", help="evaluate a checkpoint on a test split")
    common(test)
    test.add_argument("--checkpoint", required=True, help="checkpoint folder")
    test.add_argument("--reference", default="teacher", choices=["teacher", "expert"])
    test.add_argument("--gate", default="gated", choices=["gated", "open", "closed"])
    test.set_defaults(run=_test)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"rdexpert {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
