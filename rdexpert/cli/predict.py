"""``rdexpert predict``: score image files and folders into predictions.csv and overlay PNGs."""

from __future__ import annotations

import sys
from pathlib import Path

from rdexpert.cli.console import check_output, printable


def predict_inputs(entries: list[str], out: Path) -> list[tuple[Path, str]]:
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


def run_predict(args) -> None:
    import csv
    import io

    from rdexpert.checkpoint.io import atomic_write
    from rdexpert.evaluation.plots import overlay, save_png
    from rdexpert.inference.predictor import Predictor

    out = Path(args.out)
    items = predict_inputs(args.input, out)
    check_output(out)
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
            print(printable(f"rdexpert predict: warning: skipped {path}: {error}"), file=sys.stderr)
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
        rows.append([printable(prediction.path), f"{prediction.score:.6f}", f"{prediction.normalized_score:.4f}",
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
    print(printable(f"{len(rows)} images, {flagged} anomalous (raw threshold {predictor.threshold:.4f}); "
                   f"predictions.csv{'' if args.no_overlays else ' and overlays/'} in {out}"))
    if not args.no_ood:
        _warn_out_of_distribution(predictor, [row[4] == 1 for row in rows])
    if skipped:
        shown = ", ".join(str(path) for path, _ in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(printable(f"rdexpert predict: warning: scored {len(rows)}, skipped {len(skipped)} unreadable: {shown}"),
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
        print("rdexpert predict: note: this checkpoint has no out-of-distribution check (columns left empty); "
              "add one with `rdexpert fit-ood`", file=sys.stderr)
    elif any(flags):
        print(printable(f"rdexpert predict: warning: {sum(flags)} of {len(flags)} images do not look like {product} "
                       "images the model was trained on (out_of_distribution=1): their verdicts are not meaningful"),
              file=sys.stderr)

