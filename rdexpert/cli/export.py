"""``rdexpert export``: an ONNX model checked against PyTorch, or a float16 checkpoint folder."""

from __future__ import annotations

from pathlib import Path

from rdexpert.cli.console import check_output


def run_export_fp16(args) -> None:
    import torch

    from rdexpert.checkpoint.folder import compact_checkpoint
    from rdexpert.checkpoint.pretrained import Checkpoint
    from rdexpert.hub.resolve import resolve_checkpoint

    check_output(args.out)
    out = compact_checkpoint(resolve_checkpoint(args.checkpoint)[0], args.out)
    size_mib = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    print(f"float16 checkpoint written to {out} ({size_mib:.1f} MiB in all)")
    if args.no_verify:
        return
    full, half = Checkpoint.from_pretrained(args.checkpoint).model, Checkpoint.from_pretrained(out).model
    images = torch.rand(2, 3, full.config.image_size, full.config.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = full(images).maps, half(images).maps
    print(f"max |float16 - float32| on the anomaly map: {(a.fused - b.fused).abs().max().item():.2e} "
          f"(maps reach {a.fused.max().item():.2f}); on the score: {(a.score - b.score).abs().max().item():.2e}")


def run_export(args) -> None:
    import torch

    from rdexpert.checkpoint.pretrained import Checkpoint
    from rdexpert.inference.export import TOLERANCE, compare_with_onnxruntime, export_onnx, onnx_metadata

    if args.format == "fp16":
        return run_export_fp16(args)
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give the file to write, e.g. {Path(args.out) / 'model.onnx'}")
    check_output(Path(args.out).parent)
    checkpoint = Checkpoint.from_pretrained(args.checkpoint)
    model, config = checkpoint.model, checkpoint.config
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

