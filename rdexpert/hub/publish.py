"""Publishing checkpoints to the Hugging Face Hub: a model card per category, staging, upload.

One model repo holds one subfolder per category (see :mod:`rdexpert.hub.resolve`
for reading them back). Nothing here is needed to load a checkpoint.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, is_offline_mode

from .. import __version__
from ..calibration import Calibration
from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointInfo, read_config
from ..checkpoint_format import OOD_NAME
from ..metrics import metrics_table
from .resolve import NAME, HubError

EXTRA_FILES = ("LICENSE", "NOTICE", "LICENSE.md", "NOTICE.md")  # shipped beside the weights when present


def license_id(config: dict, override: str | None = None) -> str:
    """The license the weights are published under: ``override``, else config.json ``license.id``."""
    chosen = override or CheckpointInfo.from_config(config).license.get("id")
    if not chosen:
        raise HubError(
            "say which license the weights carry (the training data's license usually decides, e.g. "
            "cc-by-nc-sa-4.0 for MVTec AD or MPDD): pass --license, or add {\"license\": {\"id\": ...}} to config.json"
        )
    return chosen


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
        rows.append(("data", f"{Path(str(dataset.get('root', '?'))).name} / {dataset.get('category', '?')}"))
    rows.append(("rdexpert", info.rdexpert_version or "?"))
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def _threshold_section(info: CheckpointInfo) -> str:
    calibration = info.calibration
    if calibration.get("threshold") is None:
        return "No calibrated threshold is stored.\n"
    text = (
        f"Raw score threshold **{calibration['threshold']:.4f}**, from {calibration.get('source', 'normal images')}: "
        f"{calibration.get('rule', '')}. Normalised scores put it at 0.5 "
        f"({calibration.get('normalization', 'see rdexpert.calibration')}).\n"
    )
    try:
        text += f"\nHow far to trust it: {Calibration.from_dict(calibration).summary()}. No test image was used.\n"
    except ValueError:
        pass
    if calibration.get("f1_threshold") is not None:
        text += f"\nF1-optimal threshold on the labelled test split: {calibration['f1_threshold']:.4f} (`threshold=\"f1\"`).\n"
    return text


def _card_header(license: str, *extra_tags: str) -> str:
    """The YAML front matter the Hub reads from a model card."""
    tags = ["anomaly-detection", "reverse-distillation", *extra_tags, "rdexpert"]
    return f"---\nlicense: {license}\nlibrary_name: rdexpert\ntags:\n" + "".join(f"- {t}\n" for t in tags) + "---\n"


def model_card(config: dict, repo_id: str, category: str, license: str) -> str:
    """The README.md published with a category: metrics, recipe, threshold, usage, license."""
    info = CheckpointInfo.from_config(config)
    notice = info.license.get("attribution", "")
    return _card_header(license, "industrial-inspection") + f"""
# RD with Expert — `{category}` ({info.backbone}, variant `{info.variant}`)

A one-class anomaly detector for **{category}** images: trained on normal images
only, it gives every image a score and every pixel an anomaly value. Method:
*Unlocking the Potential of Reverse Distillation for Anomaly Detection* (Liu et al.,
AAAI 2025, arXiv 2412.07579), "RD with Expert", as reimplemented by `rdexpert`
{__version__}: a frozen expert, a trained teacher, and a student decoder with
Guided Information Injection.

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
from rdexpert.inference import Predictor

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
from rdexpert.inference import Predictor
predictor = Predictor.from_pretrained("{repo_id}/<category>")
```
"""


def stage_checkpoint(
    checkpoint: str | Path, staging: str | Path, repo_id: str, category: str | None = None, license: str | None = None
) -> Path:
    """Lay out what one category folder of the repo holds: config, weights, the out-of-distribution check, card,
    LICENSE/NOTICE; nothing else."""
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
    for name in (CONFIG_NAME, WEIGHTS_NAME, OOD_NAME, *EXTRA_FILES):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, staging / name)
    (staging / "README.md").write_text(model_card(config, repo_id, category, chosen))
    return staging


def push_to_hub(
    checkpoint: str | Path,
    repo_id: str,
    category: str | None = None,
    license: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Publish a checkpoint as ``repo_id/CATEGORY/`` (creating the repo if needed); returns the commit URL."""
    if is_offline_mode():
        raise HubError("HF_HUB_OFFLINE is set: publishing needs the network; unset it and log in (`hf auth login`)")
    config = read_config(checkpoint)
    info = CheckpointInfo.from_config(config)
    category = category or info.category
    with tempfile.TemporaryDirectory(prefix="rdexpert-push-") as tmp:
        staging = stage_checkpoint(checkpoint, tmp, repo_id, category, license)
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if not api.file_exists(repo_id, "README.md"):
            api.upload_file(path_or_fileobj=repo_card(repo_id, license_id(config, license)).encode(),
                            path_in_repo="README.md", repo_id=repo_id, commit_message="Add repository card")
        commit = api.upload_folder(
            folder_path=staging, path_in_repo=category, repo_id=repo_id,
            commit_message=commit_message or f"Upload {category} ({info.backbone}, {info.variant})",
        )
    return commit.commit_url
