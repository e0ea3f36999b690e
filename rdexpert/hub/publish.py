"""Publishing checkpoints to the Hugging Face Hub: a model card per category, staging, upload.

One model repo holds one subfolder per category (see :mod:`rdexpert.hub.resolve`
for reading them back). ``rdexpert push`` takes one checkpoint (one category
folder) or a training run folder of them, ``OUT/<category>/`` (the whole repo in
one commit, with a repo card whose ``model-index`` lists every category's test
metrics). Nothing here is needed to load a checkpoint.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from pathlib import Path

import timm
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, is_offline_mode

from rdexpert import __version__
from rdexpert.checkpoint.folder import CONFIG_NAME, WEIGHTS_NAME, CheckpointInfo, read_config
from rdexpert.checkpoint.format import OOD_NAME
from rdexpert.checkpoint.io import read_json
from rdexpert.evaluation.metrics import METRIC_NAMES, metrics_table
from rdexpert.hub.resolve import NAME, HubError
from rdexpert.inference.calibration import Calibration

EXTRA_FILES = ("LICENSE", "NOTICE", "LICENSE.md", "NOTICE.md")  # shipped beside the weights when present
TEST_REPORT = Path("test") / "metrics.json"  # what `rdexpert test --out CHECKPOINT/test` (training suggests it) writes
# the test report travels with the checkpoint (not its overlay pictures): what the card's numbers were measured as
REPORT_FILES = (TEST_REPORT, Path("test") / "metrics.md", Path("test") / "scores.csv")
# The Hub has no anomaly-detection task. The model's output is a per-pixel anomaly map - a binary normal/anomalous
# segmentation, scored by P-AUROC and AUPRO - whose maximum is the image score, so image segmentation fits best.
PIPELINE_TAG = "image-segmentation"
GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"  # the weights go to LFS (the Hub's own rule)


def license_id(config: dict, override: str | None = None) -> str:
    """The license the weights are published under: ``override``, else config.json ``license.id``."""
    chosen = override or CheckpointInfo.from_config(config).license.get("id")
    if not chosen:
        raise HubError(
            "say which license the weights carry (the training data's license usually decides, e.g. "
            "cc-by-nc-sa-4.0 for MVTec AD or MPDD): pass --license, or add {\"license\": {\"id\": ...}} to config.json"
        )
    return chosen


def stored_metrics(folder: str | Path, config: dict) -> dict:
    """Test metrics by inference setting: config.json's (``rdexpert test --save-metrics``), else the report
    ``test/metrics.json`` beside it (``rdexpert test --out CHECKPOINT/test``); {} when neither is there."""
    info = CheckpointInfo.from_config(config)
    report = Path(folder) / TEST_REPORT
    if info.metrics or not report.is_file():
        return info.metrics
    try:
        measured = {k: v for k, v in read_json(report).items() if isinstance(v, (int, float))}
    except (ValueError, AttributeError):
        raise HubError(f"{report} is not a metrics report (a JSON object of numbers)") from None
    return {str(TEST_REPORT): {"split": "test", "dataset": _dataset_name(info), "category": info.category, **measured}}


def _headline(metrics: dict, info: CheckpointInfo) -> dict:
    """The metrics that describe a checkpoint: its default inference setting's, else the first stored (or the flat
    metrics of an older config.json)."""
    return metrics.get(info.default_setting) or next((m for m in metrics.values() if isinstance(m, dict)), metrics)


def _dataset_name(info: CheckpointInfo) -> str:
    """The training data set, as its folder name (e.g. ``mpdd``)."""
    return Path(str(info.dataset.get("root") or info.training.get("data_root") or "?")).name


def base_model(info: CheckpointInfo) -> str | None:
    """The Hub id of the expert's pretrained weights (timm's ``pretrained_cfg``); None for a random expert."""
    cfg = timm.models.get_pretrained_cfg(info.backbone) if info.pretrained and info.backbone else None
    return getattr(cfg, "hf_hub_id", None)


def _metrics_section(info: CheckpointInfo) -> str:
    table = metrics_table(info.metrics, "setting (reference/GII gate)", {"images": "images"})
    if not table:
        return "No test metrics were stored with this checkpoint (`rdexpert test --save-metrics` adds them).\n"
    first = next(iter(info.metrics.values()))
    where = f"{first.get('split', 'test')} split of `{first.get('dataset', '?')}` / `{first.get('category', '?')}`"
    return (
        table
        + f"\nMeasured by `rdexpert test` on the {where}, in percent. The model is the final training iterate: "
        "no model selection on the test split.\n"
    )


def _recipe_section(info: CheckpointInfo) -> str:
    training = info.training
    rows = [
        ("backbone", f"{info.backbone} ({'ImageNet-pretrained' if info.pretrained else 'random'} expert)"),
        ("variant", info.variant),
        ("input", f"{info.image_size} x {info.image_size} RGB, mean {info.mean or '?'}, std {info.std or '?'}"),
    ]
    keys = [("preset", "preset"), ("iterations", "iterations"), ("batch_size", "batch size"), ("student_lr", "student lr"),
            ("teacher_lr", "teacher lr"), ("betas", "Adam betas"), ("seed", "seed"), ("textures", "anomaly textures"),
            ("foreground_method", "foreground mask"), ("train_images", "training images"),
            ("holdout_images", "held-out normal images"), ("train_seconds", "training seconds"), ("device", "device")]
    rows += [(label, training[key]) for key, label in keys if training.get(key) is not None]
    dataset = info.dataset
    if dataset:
        rows.append(("data", f"{_dataset_name(info)} / {dataset.get('category', '?')}"))
    rows.append(("rdexpert", info.rdexpert_version or "?"))
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def _threshold_section(info: CheckpointInfo) -> str:
    calibration = info.calibration
    if calibration.get("threshold") is None:
        return "No calibrated threshold is stored.\n"
    text = (
        f"Raw score threshold **{calibration['threshold']:.4f}**, from {calibration.get('source', 'normal images')}: "
        f"{calibration.get('rule', '')}. Normalised scores put it at 0.5 "
        f"({calibration.get('normalization', 'see rdexpert.inference.calibration')}).\n"
    )
    try:
        text += f"\nHow far to trust it: {Calibration.from_dict(calibration).summary()}. No test image was used.\n"
    except ValueError:
        pass
    if calibration.get("f1_threshold") is not None:
        text += f"\nF1-optimal threshold on the labelled test split: {calibration['f1_threshold']:.4f} (`threshold=\"f1\"`).\n"
    return text


METHOD = f"""*Unlocking the Potential of Reverse Distillation for Anomaly Detection* (Liu et al.,
AAAI 2025, arXiv 2412.07579), "RD with Expert", as reimplemented by `rdexpert`
{__version__}: a frozen expert, a trained teacher, and a student decoder with
Guided Information Injection."""


def _card_header(license: str, infos: list[CheckpointInfo] = (), dataset_id: str | None = None, **fields) -> str:
    """The YAML front matter the Hub reads from a model card (written by huggingface_hub's ModelCardData).
    ``datasets`` lists Hub dataset ids, so only the one the user names (``--dataset-id``), never a local folder."""
    bases = sorted({b for b in map(base_model, infos) if b})
    data = ModelCardData(
        license=license, library_name="rdexpert", pipeline_tag=PIPELINE_TAG,
        base_model=bases[0] if len(bases) == 1 else bases or None,
        datasets=[dataset_id] if dataset_id else None,
        tags=["anomaly-detection", "reverse-distillation", "industrial-inspection", "rdexpert"], **fields,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def model_card(config: dict, repo_id: str, category: str, license: str, dataset_id: str | None = None) -> str:
    """The README.md published with a category: metrics, recipe, threshold, usage, license."""
    info = CheckpointInfo.from_config(config)
    notice = info.license.get("attribution", "")
    return _card_header(license, [info], dataset_id) + f"""
# RD with Expert — `{category}` ({info.backbone}, variant `{info.variant}`)

A one-class anomaly detector for **{category}** images: trained on normal images
only, it gives every image a score and every pixel an anomaly value. Method:
{METHOD}

## Test metrics

{_metrics_section(info)}
## Decision threshold

{_threshold_section(info)}
## Training recipe

{_recipe_section(info)}
## Usage

```bash
pip install rdexpert
rdexpert predict --checkpoint {repo_id}/{category} --input images/ --out predictions/
```

```python
from rdexpert.inference.predictor import Predictor

predictor = Predictor.from_pretrained("{repo_id}/{category}")   # append @<commit> to pin a revision
prediction = predictor.predict("image.png")
print(prediction.score, prediction.normalized_score, prediction.label)  # label 1 = anomalous
```

Files: `config.json` (everything needed to rebuild the model; validated on load) and
`model.safetensors` (teacher and student; the expert is the pretrained backbone,
rebuilt from its source). Nothing is unpickled.

## License

The weights are released under `{license}`. {notice}
"""


def repo_card(repo_id: str, license: str) -> str:
    """The repository's top README: what the category subfolders are."""
    return _card_header(license) + f"""
# {repo_id}: RD with Expert anomaly detectors

One subfolder per product category; each holds `config.json`, `model.safetensors` and
a model card (`README.md`) with its test metrics, training recipe and license.

```python
from rdexpert.inference.predictor import Predictor
predictor = Predictor.from_pretrained("{repo_id}/<category>")
```
"""


def zoo_card(repo_id: str, checkpoints: dict[str, Path], license: str, dataset_id: str | None = None) -> str:
    """The repository's README for several categories: their test metrics as a table and as the Hub's
    ``model-index`` (one result per category: task, data set and split, image- and pixel-level metrics)."""
    rows, results, infos = {}, [], []
    for category, folder in checkpoints.items():
        config = read_config(folder)
        info = CheckpointInfo.from_config(config)
        infos.append(info)
        measured = _headline(stored_metrics(folder, config), info)
        values = {k: float(measured[k]) for k in METRIC_NAMES
                  if isinstance(measured.get(k), (int, float)) and math.isfinite(measured[k])}
        rows[f"`{category}`"] = {"variant": info.variant, "backbone": info.backbone, "image_size": info.image_size,
                                 "images": measured.get("images", "?" if values else "–"), **values}
        dataset = measured.get("dataset") or _dataset_name(info)
        results += [EvalResult(task_type="anomaly-detection", task_name="Anomaly Detection",
                               dataset_type=dataset_id or dataset,
                               dataset_name=dataset, dataset_config=category, dataset_split=measured.get("split", "test"),
                               metric_type=key, metric_name=METRIC_NAMES[key], metric_value=round(100 * value, 1))
                    for key, value in values.items()]
    table = metrics_table(rows, "category", {"variant": "variant", "backbone": "backbone", "image_size": "px",
                                             "images": "test images"})
    if not table:
        table = "No category has stored test metrics (`rdexpert test --save-metrics` adds them): " + ", ".join(rows)
    first = next(iter(checkpoints))
    header = _card_header(license, infos, dataset_id, model_name=repo_id.split("/")[-1], eval_results=results or None)
    return header + f"""
# {repo_id}: RD with Expert anomaly detectors

{len(checkpoints)} one-class anomaly detectors, one per product category: each is trained on
normal images only and gives every image a score and every pixel an anomaly value.
Method: {METHOD}

## Categories and test metrics

{table}
In percent, on each category's test split, as measured by `rdexpert test` and stored with
the checkpoint (its config.json, else its `test/metrics.json`). I-AUROC, image AP and F1-max
rate the image scores; P-AUROC, pixel AP and AUPRO@0.3 the anomaly maps. Each model is the
final training iterate: no model selection on the test split. "–": no stored test metrics.

## Usage

```python
from rdexpert.inference.predictor import Predictor

predictor = Predictor.from_pretrained("{repo_id}", subfolder="{first}")   # or "{repo_id}/{first}@<commit>"
prediction = predictor.predict("image.png")
```

`python app.py --hub-repo {repo_id}` lists every category and downloads one when it is chosen.
Each subfolder holds `config.json`, `model.safetensors` (and `ood.safetensors`, the
out-of-distribution check, where fitted) and its own card (`README.md`: threshold, training
recipe, license). Nothing is unpickled.

## License

The weights are released under `{license}`; each category's card names its training data
and the attribution it asks for.
"""


def stage_checkpoint(
    checkpoint: str | Path, staging: str | Path, repo_id: str, category: str | None = None, license: str | None = None,
    dataset_id: str | None = None,
) -> Path:
    """Lay out what one category folder of the repo holds: config, weights, the out-of-distribution check, test
    report, card, LICENSE/NOTICE; nothing else."""
    folder = Path(checkpoint)
    config = read_config(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise HubError(f"{folder} has no {WEIGHTS_NAME}; nothing to publish")
    category = category or CheckpointInfo.from_config(config).category
    if not category or not re.fullmatch(NAME, category):
        raise HubError(f"give a category folder name of letters, digits, '.', '_' or '-' (got {category!r}): --category")
    chosen = license_id(config, license)
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME, OOD_NAME, *EXTRA_FILES, *REPORT_FILES):
        if (folder / name).is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, staging / name)
    card_config = {**config, "metrics": stored_metrics(folder, config)}
    (staging / "README.md").write_text(model_card(card_config, repo_id, category, chosen, dataset_id))
    return staging


def category_folders(run: str | Path) -> dict[str, Path]:
    """The checkpoints of a training run folder ``OUT/<category>/`` by category: its subfolders with a config.json."""
    run = Path(run)
    return {sub.name: sub for sub in sorted(run.iterdir()) if (sub / CONFIG_NAME).is_file()} if run.is_dir() else {}


def stage_run(run: str | Path, staging: str | Path, repo_id: str, license: str | None = None,
              dataset_id: str | None = None) -> Path:
    """Lay out the whole repo for a run folder: a folder per category (as :func:`stage_checkpoint`), the repo card
    README.md with every category's metrics, and .gitattributes."""
    checkpoints = category_folders(run)
    licenses = {license_id(read_config(folder), license) for folder in checkpoints.values()}
    if len(licenses) > 1:
        raise HubError(f"the categories carry different licenses {sorted(licenses)}: pass one with --license, "
                       "or push them to separate repos")
    staging = Path(staging)
    for category, folder in checkpoints.items():
        stage_checkpoint(folder, staging / category, repo_id, category, license, dataset_id)
    (staging / ".gitattributes").write_text(GITATTRIBUTES)
    (staging / "README.md").write_text(zoo_card(repo_id, checkpoints, licenses.pop(), dataset_id))
    return staging


def stage(checkpoint: str | Path, staging: str | Path, repo_id: str, category: str | None = None,
          license: str | None = None, dataset_id: str | None = None) -> str | None:
    """Stage what ``rdexpert push`` uploads into ``staging`` (new or empty): a checkpoint as one category folder, or a
    run folder of checkpoints (no config.json of its own) as the whole repo. Returns the checkpoint's category folder
    in the repo, or None for a run folder (it goes to the repo root)."""
    staging, folder = Path(staging), Path(checkpoint)
    if staging.is_dir() and any(staging.iterdir()):
        raise HubError(f"{staging} is not empty: stage into a new folder")
    if (folder / CONFIG_NAME).is_file() or not category_folders(folder):
        category = category or CheckpointInfo.from_config(read_config(folder)).category
        stage_checkpoint(folder, staging, repo_id, category, license, dataset_id)
        return category
    if category:
        raise HubError(f"{folder} is a run folder: its categories are its subfolders' names, so drop --category")
    stage_run(folder, staging, repo_id, license, dataset_id)
    return None


def push_to_hub(
    checkpoint: str | Path,
    repo_id: str,
    category: str | None = None,
    license: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    dataset_id: str | None = None,
) -> str:
    """Publish a checkpoint as ``repo_id/CATEGORY/``, or a run folder as every ``CATEGORY/`` plus the repo card, in
    one commit (creating the repo if needed); returns the commit URL."""
    if is_offline_mode():
        raise HubError("HF_HUB_OFFLINE is set: publishing needs the network; unset it and log in (`hf auth login`)")
    with tempfile.TemporaryDirectory(prefix="rdexpert-push-") as tmp:
        folder = stage(checkpoint, tmp, repo_id, category, license, dataset_id)
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if folder is None:
            message = "Upload " + ", ".join(sorted(p.name for p in Path(tmp).iterdir() if p.is_dir()))
        else:
            info = CheckpointInfo.from_config(read_config(tmp))
            message = f"Upload {folder} ({info.backbone}, {info.variant})"
            if not api.file_exists(repo_id, "README.md"):
                api.upload_file(path_or_fileobj=repo_card(repo_id, ModelCard.load(Path(tmp) / "README.md").data.license)
                                .encode(), path_in_repo="README.md", repo_id=repo_id, commit_message="Add repository card")
        commit = api.upload_folder(folder_path=tmp, path_in_repo=folder, repo_id=repo_id,
                                   commit_message=commit_message or message)
    return commit.commit_url
