"""Listing the samples of VisA from its split CSV.

Why this module exists: VisA does not say normal or defective by folder; its
``split_csv/1cls.csv`` lists every image with its object (category), split,
label and mask, with paths relative to the dataset root.
"""
from __future__ import annotations

import csv
from pathlib import Path

from rdexpert.data.layouts.samples import Sample, _check_root, _check_split

__all__ = ["visa_samples"]


def visa_samples(
    root: str | Path, category: str, split: str, split_csv: str | Path | None = None
) -> list[Sample]:
    """List samples of VisA from its split CSV.

    The CSV (default ``root/split_csv/1cls.csv``) has the columns
    ``object,split,label,image,mask`` with ``label`` in {normal, anomaly} and
    paths relative to ``root``.  ``defect_type`` is ``"good"`` or ``"anomaly"``
    (VisA has no per-type labels in 1cls.csv).
    """
    _check_split(split)
    root = _check_root(root)
    csv_path = Path(split_csv) if split_csv is not None else root / "split_csv" / "1cls.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"VisA split CSV '{csv_path}' not found. Put VisA's split_csv/1cls.csv "
            f"(columns object,split,label,image,mask) there or pass split_csv=."
        )
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower() for f in (reader.fieldnames or [])}
        need = {"object", "split", "label", "image", "mask"}
        if not need <= fields:
            raise ValueError(
                f"VisA split CSV '{csv_path}' lacks columns {sorted(need - fields)}; "
                f"expected object,split,label,image,mask."
            )
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    objects = sorted({r["object"] for r in rows})
    if category not in objects:
        raise FileNotFoundError(
            f"Category '{category}' not found in '{csv_path}'. Categories found there: "
            f"{', '.join(objects) if objects else '(none)'}."
        )
    samples: list[Sample] = []
    for r in rows:
        if r["object"] != category or r["split"].lower() != split:
            continue
        img = root / r["image"]
        if not img.is_file():
            raise FileNotFoundError(f"Image '{img}' listed in '{csv_path}' does not exist.")
        label = 0 if r["label"].lower() in ("normal", "good", "0") else 1
        mask: Path | None = None
        if label == 1:
            if not r["mask"]:
                raise FileNotFoundError(
                    f"No mask listed in '{csv_path}' for anomalous image '{img}'."
                )
            mask = root / r["mask"]
            if not mask.exists():
                raise FileNotFoundError(
                    f"No mask for defective image '{img}': expected '{mask}' (from '{csv_path}')."
                )
        samples.append(Sample(img, label, mask, "good" if label == 0 else "anomaly"))
    if not samples:
        raise ValueError(f"No '{split}' rows for category '{category}' in '{csv_path}'.")
    samples.sort(key=lambda s: str(s.path))
    return samples
