"""Build the shipped zoo: every product under ../shared/data, its default model and its ablation variants.

    python bench/build_zoo.py                       # everything into checkpoints/ (hours on 2 CPU cores)
    python bench/build_zoo.py --only tire           # one product
    python bench/build_zoo.py --dry-run             # the plan, nothing run
    python bench/build_zoo.py --refresh             # rewrite finished weights with this rdexpert, check the scores

Each product gets, in the layout ``rdexpert push`` publishes (one folder per checkpoint, see rdexpert.hub):

- ``<product>/``: the default model (variant ``full``, the method's defaults) at the ``cpu`` preset;
- ``<product>_<variant>_128px/``: each ablation variant at the ``quick`` budget (128 px, 200 iterations).

Every checkpoint is trained with ``rdexpert train`` (seed 111, default flags), tested on its product's test
split with ``rdexpert test --save-metrics --out CHECKPOINT/test`` (the report, scores.csv and overlays travel
with it), and stored in float16 when every test image's score stays within 1e-3 of float32 (else float32).
Nothing is selected on the test split: each model is the final iterate; the test only reports.

``--refresh`` rewrites each finished checkpoint's weights file as this rdexpert stores it (in the dtype chosen
before; e.g. without backbone stages an older version kept), tests it again and stops unless every test score is
unchanged (within 1e-5; for float16 weights within 1e-3 of the float32 scores their first report holds); the new
report, measured on the shipped weights themselves, replaces the old one.

Resumable: a finished checkpoint (``zoo.json`` beside it) is skipped; an interrupted training resumes from its
own resume state. Each step's command and seconds go to ``zoo.json``; ``bench/results/zoo.{md,json}`` gets the
table (product x variant, metrics, calibration estimate vs the test split's real rates, size) with the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from categories import find_categories  # noqa: E402
from machine import machine_line, save_results  # noqa: E402

VARIANTS = ("rd", "rd_expert", "rd_gii", "full", "full_plain")  # rdexpert.model.VARIANTS, the paper's table order
DEFAULT_PRESET, VARIANT_PRESET = "cpu", "quick"
SEED = 111
FLOAT16_TOLERANCE = 1e-3  # largest |score(float16) - score(float32)| over the test split that float16 may cost


def plan(products: dict[str, Path], out_root: Path) -> list[dict]:
    """One job per checkpoint: defaults first (the zoo's headline), then the ablation variants."""
    jobs = [dict(name=p, product=p, data_root=str(root), variant="full", preset=DEFAULT_PRESET)
            for p, root in products.items()]
    jobs += [dict(name=f"{p}_{v}_128px", product=p, data_root=str(root), variant=v, preset=VARIANT_PRESET)
             for p, root in products.items() for v in VARIANTS]
    for job in jobs:
        job["out"] = str(out_root / job["name"])
    return jobs


def rdexpert(*args: str) -> float:
    """Run ``python -m rdexpert ARGS`` (this checkout's code); its seconds. A failure stops the build."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rdexpert", *args], cwd=ROOT, check=True)
    return round(time.perf_counter() - started, 1)


def read_scores(report: Path) -> dict[str, float]:
    with open(report / "scores.csv", encoding="utf-8") as handle:
        return {row["image"]: float(row["score"]) for row in csv.DictReader(handle)}


def compact(out: Path, category: str, data_root: str) -> dict:
    """Swap the float32 weights for float16 when the test split's scores move by at most FLOAT16_TOLERANCE."""
    half = out.with_name(out.name + ".float16")
    shutil.rmtree(half, ignore_errors=True)
    rdexpert("export", "--checkpoint", str(out), "--format", "fp16", "--out", str(half))
    rdexpert("test", "--checkpoint", str(half), "--data-root", data_root, "--category", category,
             "--out", str(half / "test_check"))
    full, small = read_scores(out / "test"), read_scores(half / "test_check")
    worst = max(abs(full[name] - small[name]) for name in full)
    kept = "float16" if worst <= FLOAT16_TOLERANCE else "float32"
    if kept == "float16":
        shutil.copy2(half / "model.safetensors", out / "model.safetensors.tmp")
        shutil.copy2(half / "config.json", out / "config.json.tmp")
        os.replace(out / "model.safetensors.tmp", out / "model.safetensors")
        os.replace(out / "config.json.tmp", out / "config.json")
    shutil.rmtree(half)
    return {"weights": kept, "float16_max_score_change": worst}


def build(job: dict) -> dict:
    out = Path(job["out"])
    record = out / "zoo.json"
    if record.is_file():
        return json.loads(record.read_text())
    product, data_root = job["product"], job["data_root"]
    seconds = {}
    if not (out / "config.json").is_file() or (out / "resume").exists():
        seconds["train"] = rdexpert("train", "--data-root", data_root, "--category", product, "--variant",
                                    job["variant"], "--preset", job["preset"], "--seed", str(SEED), "--out", str(out))
    seconds["test"] = rdexpert("test", "--checkpoint", str(out), "--data-root", data_root, "--category", product,
                               "--out", str(out / "test"), "--save-metrics")
    dtype = compact(out, product, data_root)
    result = {**{k: job[k] for k in ("name", "product", "variant", "preset")}, "seed": SEED, **dtype,
              "seconds": seconds, "machine": machine_line()}
    record.write_text(json.dumps(result, indent=2) + "\n")
    return result


# The data sets' terms (../shared/data/README.md): the weights trained on them are shared under the same license
DATA_LICENSES = {
    "mpdd": ("MPDD (Metal Parts Defect Detection dataset)", 'S. Jezek et al., "Deep learning-based defect detection of '
             'metal parts: evaluating current methods in complex conditions", ICUMT 2021', "attribute MPDD"),
    "mvtec3d_rgb": ("MVTec 3D-AD (RGB images only)", 'P. Bergmann et al., "The MVTec 3D-AD Dataset for Unsupervised 3D '
                    'Anomaly Detection and Localization", VISAPP 2022', "attribute MVTec 3D-AD"),
    "mvtec_ad": ("MVTec AD", 'P. Bergmann et al., "MVTec AD - A Comprehensive Real-World Dataset for Unsupervised '
                 'Anomaly Detection", CVPR 2019', "attribute MVTec AD"),
}
NOTICE = """rdexpert zoo checkpoint: {name}
Weights license: Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International (CC BY-NC-SA 4.0),
https://creativecommons.org/licenses/by-nc-sa/4.0/ - non-commercial use only; give the attribution below; share
adaptations under the same terms.

Why: the weights were trained on images of {data}, category {product}, licensed CC BY-NC-SA 4.0, and are
shared under the same terms. Attribution: {citation}.
The copy used here is described in ../shared/data/README.md of the rdexpert project (it may be re-split or
downscaled): the test figures in config.json and test/ are measured on it. The overlay images under test/ show
images of that data set and carry the same license. Expert/teacher initialisation: ImageNet EfficientNet-Lite0
(Apache-2.0). The rdexpert code is Apache-2.0.
"""


def license_files(job: dict) -> None:
    """The license section of config.json and a NOTICE file, from the data set's terms (idempotent)."""
    from rdexpert.checkpoint.folder import update_config

    out, data = Path(job["out"]), Path(job["data_root"]).name
    if data not in DATA_LICENSES:
        return
    title, citation, attribute = DATA_LICENSES[data]
    update_config(out, license={"id": "cc-by-nc-sa-4.0", "attribution": (
        f"Trained on {title} {job['product']} ({citation}), CC BY-NC-SA 4.0: non-commercial use, {attribute}, share "
        "alike. See NOTICE.")})
    (out / "NOTICE").write_text(NOTICE.format(name=job["name"], data=title, product=job["product"], citation=citation))


REFRESH_TOLERANCE = 1e-5  # a refreshed weights file must score the test split as before (the CSV keeps 6 decimals)


def refresh(job: dict) -> None:
    """Rewrite a finished checkpoint's weights with this rdexpert (rdexpert.checkpoint.folder.compact_checkpoint, same
    dtype), re-test it, and keep it only when no test score moved."""
    from rdexpert.checkpoint.folder import compact_checkpoint

    out = Path(job["out"])
    record = json.loads((out / "zoo.json").read_text())
    if "refreshed" in record:
        return
    fresh = out.with_name(out.name + ".refresh")
    shutil.rmtree(fresh, ignore_errors=True)
    compact_checkpoint(out, fresh, record["weights"])
    shutil.rmtree(fresh / "test")
    seconds = rdexpert("test", "--checkpoint", str(fresh), "--data-root", job["data_root"], "--category",
                       job["product"], "--out", str(fresh / "test"), "--save-metrics")
    before, after = read_scores(out / "test"), read_scores(fresh / "test")
    moved = max(abs(before[name] - after[name]) for name in before)
    # a float16 checkpoint's first report was measured in float32 (FLOAT16_TOLERANCE apart); the new one is its own
    tolerance = FLOAT16_TOLERANCE if record["weights"] == "float16" else REFRESH_TOLERANCE
    if set(before) != set(after) or moved > tolerance:
        raise SystemExit(f"{out}: the refreshed weights score differently (largest change {moved:g}); kept as is, "
                         f"the candidate is in {fresh}")
    record.update(refreshed={"max_score_change": moved, "test_seconds": seconds, "machine": machine_line()})
    (fresh / "zoo.json").write_text(json.dumps(record, indent=2) + "\n")
    stale = out.with_name(out.name + ".stale")
    shutil.rmtree(stale, ignore_errors=True)
    os.replace(out, stale)
    os.replace(fresh, out)
    shutil.rmtree(stale)


def other_settings(job: dict) -> None:
    """The default models' metrics at the other settings a person can switch to in the app (the other reference,
    the GII gate open and closed), stored in config.json by ``rdexpert test --save-metrics``; skipped when stored."""
    if job["name"] != job["product"]:
        return
    out = Path(job["out"])
    config = json.loads((out / "config.json").read_text())
    reference = config["model"]["default_reference"]
    other = "expert" if reference == "teacher" else "teacher"
    for ref, gate in ((other, "gated"), (reference, "open"), (reference, "closed")):
        if f"{ref}/{gate}" in config.get("metrics", {}):
            continue
        with tempfile.TemporaryDirectory() as scratch:
            rdexpert("test", "--checkpoint", str(out), "--data-root", job["data_root"], "--category", job["product"],
                     "--out", scratch, "--reference", ref, "--gate", gate, "--save-metrics")


CARD_REPO = "your-org/rdexpert-zoo"  # the cards' example repo id: `rdexpert push --repo` names the real one


def cards(out_root: Path) -> None:
    """Each checkpoint's model card (README.md) and the zoo's card at the top, as ``rdexpert push`` stages them, so
    the shipped folder reads as the Hub repo does (rdexpert.hub.publish)."""
    from rdexpert.hub.publish import stage

    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "zoo"
        stage(out_root, staged, CARD_REPO)
        for card in staged.glob("*/README.md"):
            shutil.copy2(card, out_root / card.parent.name / "README.md")
        for name in ("README.md", ".gitattributes"):
            shutil.copy2(staged / name, out_root / name)


def row(job: dict) -> dict:
    """What the zoo table shows of one finished checkpoint (its config.json and test report)."""
    out = Path(job["out"])
    config = json.loads((out / "config.json").read_text())
    metrics = next(iter(config.get("metrics", {}).values()), {})
    estimates = config.get("calibration", {}).get("estimates", {})
    threshold = config.get("calibration", {}).get("threshold")
    scores = list(csv.DictReader(open(out / "test" / "scores.csv", encoding="utf-8")))
    normal = [float(r["score"]) for r in scores if r["label"] == "0"]
    defect = [float(r["score"]) for r in scores if r["label"] == "1"]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"name": job["name"], "product": job["product"], "variant": job["variant"], "preset": job["preset"],
            "image_size": config.get("input", {}).get("image_size") or config.get("training", {}).get("image_size"),
            "reference": config.get("model", {}).get("default_reference"),
            **{k: metrics.get(k) for k in ("image_auroc", "pixel_auroc", "aupro")},
            "estimated_fpr": estimates.get("false_positive_rate"),
            "estimated_miss": estimates.get("faint_miss_rate", estimates.get("synthetic_miss_rate")),
            "test_fpr": sum(s >= threshold for s in normal) / max(1, len(normal)) if threshold else None,
            "test_miss": sum(s < threshold for s in defect) / max(1, len(defect)) if threshold else None,
            "mib": size / 2**20, **json.loads((out / "zoo.json").read_text())}


def table(rows: list[dict]) -> str:
    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    lines = ["| product | variant | preset | px | reference | I-AUROC | P-AUROC | AUPRO | false alarms est. / test "
             "| misses est. / test | weights | MiB |", "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['product']} | {r['variant']} | {r['preset']} | {r['image_size']} | {r['reference'] or '-'} "
                     f"| {pct(r['image_auroc'])} | {pct(r['pixel_auroc'])} | {pct(r['aupro'])} "
                     f"| {pct(r['estimated_fpr'])} / {pct(r['test_fpr'])} | {pct(r['estimated_miss'])} / "
                     f"{pct(r['test_miss'])} | {r['weights']} | {r['mib']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-root", default=str(ROOT / "checkpoints"))
    parser.add_argument("--only", nargs="+", help="products to build (default: every one under ../shared/data)")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--refresh", action="store_true", help="rewrite finished checkpoints' weights (see above)")
    args = parser.parse_args()
    products = find_categories()
    if args.only:
        products = {p: products[p] for p in args.only}
    jobs = plan(products, Path(args.out_root))
    for job in jobs:
        print(f"{job['name']:32s} {job['variant']:10s} {job['preset']:6s} -> {job['out']}", flush=True)
    if args.dry_run:
        return
    for job in jobs:
        build(job)
        license_files(job)
        if args.refresh:
            refresh(job)
        other_settings(job)
        print("done:", job["name"], flush=True)
    cards(Path(args.out_root))
    rows = [row(job) for job in jobs]
    text = (f"# The shipped zoo\n\nBuilt by `python bench/build_zoo.py` on {machine_line()}. Seed {SEED}, final "
            "iterates, no selection on the test split. Metrics in percent on each product's test split at the "
            "checkpoint's default setting. False alarms / misses: the calibration's estimate (held-out normal "
            "images; faint synthetic defects) / the test split's real rate at the stored threshold.\n\n"
            + table(rows) + "\n")
    save_results("zoo", text, rows=rows)
    print(text)


if __name__ == "__main__":
    main()
