"""Checkpoints on the Hugging Face Hub: one model repo, one subfolder per category.

A checkpoint is named either by a local folder or by ``ORG/NAME/CATEGORY[@REVISION]``
(REVISION: a branch, tag or commit; default ``main``). huggingface_hub's
``snapshot_download`` resolves the revision to one commit and fetches only that
commit's ``CATEGORY/*`` files, so the files always belong together even if the
branch moves meanwhile; the commit is reported in ``config["source"]``, and
``@<commit>`` pins it for good.

Offline (``HF_HUB_OFFLINE=1``) or with the Hub unreachable, the local Hugging
Face cache is used and a warning says so; with nothing cached the error says how
to get the files. All of it is huggingface_hub's own cache and download code.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, errors, is_offline_mode, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from . import __version__
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, read_config
from .evaluate import METRIC_NAMES

logger = logging.getLogger(__name__)

_NAME = r"[A-Za-z0-9][\w.-]*"
REFERENCE = re.compile(rf"^(?P<repo_id>{_NAME}/{_NAME})/(?P<category>{_NAME})(?:@(?P<revision>[^\s@]+))?$")
EXTRA_FILES = ("LICENSE", "NOTICE", "LICENSE.md", "NOTICE.md")  # shipped beside the weights when present
# a partly downloaded snapshot; huggingface_hub versions before this error raise LocalEntryNotFoundError instead
_NOT_CACHED = (LocalEntryNotFoundError, getattr(errors, "IncompleteSnapshotError", LocalEntryNotFoundError))


class HubError(CheckpointError):
    """A Hub checkpoint could not be found, fetched or published."""


@dataclass(frozen=True)
class HubReference:
    """``ORG/NAME/CATEGORY@REVISION``: a category subfolder of a model repo at one revision."""

    repo_id: str
    category: str
    revision: str = "main"

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.category}@{self.revision}"


def parse_reference(ref: str) -> HubReference | None:
    """The Hub reference ``ref`` spells, or None when it is not of the form ``ORG/NAME/CATEGORY[@REVISION]``."""
    match = REFERENCE.match(str(ref))
    if match is None:
        return None
    return HubReference(match["repo_id"], match["category"], match["revision"] or "main")


def resolve_checkpoint(
    ref: str | Path, cache_dir: str | Path | None = None, endpoint: str | None = None, token: str | None = None
) -> tuple[Path, dict]:
    """A local checkpoint folder for ``ref`` and a ``source`` record (where it came from, which commit).

    An existing local path always wins over a Hub reference of the same spelling.
    """
    path = Path(ref).expanduser()
    if path.exists():
        return path, {"type": "local", "path": str(path.resolve())}
    hub = parse_reference(str(ref))
    if hub is None:
        raise CheckpointError(
            f"checkpoint {str(ref)!r} is neither an existing folder nor a Hub reference ORG/NAME/CATEGORY[@REVISION]"
        )
    snapshot = _snapshot(hub, cache_dir, endpoint, token, local_hint=f"there is no local folder {str(ref)!r}")
    folder = snapshot / hub.category
    if not (folder / CONFIG_NAME).is_file():
        available = sorted(p.parent.name for p in snapshot.glob(f"*/{CONFIG_NAME}"))
        raise HubError(
            f"{hub}: commit {snapshot.name} has no checkpoint in folder {hub.category!r} "
            f"(categories available{' in the cache' if is_offline_mode() else ''}: {available or 'none'})"
        )
    source = {"type": "hub", "reference": str(hub), "repo_id": hub.repo_id, "category": hub.category,
              "revision": hub.revision, "commit": snapshot.name, "path": str(folder)}
    return folder, source


def _snapshot(hub: HubReference, cache_dir, endpoint, token, local_hint: str) -> Path:
    """Fetch ``CATEGORY/*`` of one commit; fall back to the cache, saying so, when the Hub is out of reach."""
    if is_offline_mode():
        return _cached(hub, cache_dir, "HF_HUB_OFFLINE is set", local_hint)
    api = HfApi(endpoint=endpoint, token=token)
    try:  # one cheap call first, so that a missing repo or an unreachable Hub gets its own clear message
        api.repo_info(hub.repo_id, revision=hub.revision)
    except RevisionNotFoundError:
        raise HubError(f"{hub}: repository {hub.repo_id} has no revision {hub.revision!r}") from None
    except RepositoryNotFoundError:
        raise HubError(
            f"{hub}: model repository {hub.repo_id} not found on {api.endpoint} (or it is private: log in with "
            f"`hf auth login`); also, {local_hint}"
        ) from None
    except Exception as error:  # connection refused, timeout, DNS, 5xx: the Hub is out of reach
        return _cached(hub, cache_dir, f"the Hub could not be reached ({type(error).__name__}: {error})", local_hint)
    # snapshot_download resolves the revision to one commit, downloads that commit's files only, and
    # records branch/tag -> commit in the cache's refs/ so the same reference also works offline later
    return Path(snapshot_download(hub.repo_id, revision=hub.revision, allow_patterns=f"{hub.category}/*",
                                  cache_dir=cache_dir, endpoint=endpoint, token=token))


def _cached(hub: HubReference, cache_dir, why: str, local_hint: str) -> Path:
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    try:
        snapshot = Path(snapshot_download(hub.repo_id, revision=hub.revision, allow_patterns=f"{hub.category}/*",
                                          cache_dir=cache_dir, local_files_only=True))
    except _NOT_CACHED as error:
        raise HubError(
            f"{hub} is not in the local Hugging Face cache ({cache}) and {why}; also, {local_hint}. "
            f"To fix: connect once (unset HF_HUB_OFFLINE) so it is downloaded, or fetch it elsewhere with "
            f"`hf download {hub.repo_id} --include '{hub.category}/*' --revision {hub.revision}` and copy the "
            f"cache (HF_HUB_CACHE) here, or pass a local checkpoint folder. ({type(error).__name__})"
        ) from None
    logger.warning("%s: using the locally cached snapshot %s of %s (not checked for updates)", why, snapshot.name, hub)
    return snapshot


# -- publishing ----------------------------------------------------------------------------------
def license_id(config: dict, override: str | None = None) -> str:
    """The license the weights are published under: ``override``, else config.json ``license.id``."""
    chosen = override or (config.get("license") or {}).get("id")
    if not chosen:
        raise HubError(
            "say which license the weights carry (the training data's license usually decides, e.g. "
            "cc-by-nc-sa-4.0 for MVTec AD or MPDD): pass --license, or add {\"license\": {\"id\": ...}} to config.json"
        )
    return chosen


def _percent(value) -> str:
    return "–" if value is None or value != value else f"{100 * float(value):.1f}"


def _metrics_section(config: dict) -> str:
    metrics = config.get("metrics") or {}
    if not metrics:
        return "No test metrics were stored with this checkpoint (`rdexpert test --save-metrics` adds them).\n"
    lines = ["| setting (reference/GII gate) | images | " + " | ".join(METRIC_NAMES.values()) + " |",
             "|---|---|" + "---|" * len(METRIC_NAMES)]
    for setting, row in metrics.items():
        cells = [_percent(row.get(key)) for key in METRIC_NAMES]
        lines.append(f"| {setting} | {row.get('images', '?')} | " + " | ".join(cells) + " |")
    first = next(iter(metrics.values()))
    where = f"{first.get('split', 'test')} split of `{first.get('dataset', '?')}` / `{first.get('category', '?')}`"
    return (
        "\n".join(lines)
        + f"\n\nMeasured by `rdexpert test` on the {where}, in percent. The model is the final training iterate: "
        "no model selection on the test split.\n"
    )


def _recipe_section(config: dict) -> str:
    training = config.get("training") or {}
    model = config["model"]
    backbone = config.get("backbone") or {}
    rows = [
        ("backbone", f"{model['backbone']} ({'ImageNet-pretrained' if backbone.get('pretrained', True) else 'random'} expert)"),
        ("variant", model["variant"]),
        ("input", f"{model['image_size']} x {model['image_size']} RGB, mean {backbone.get('mean', '?')}, std {backbone.get('std', '?')}"),
    ]
    keys = [("preset", "preset"), ("iterations", "iterations"), ("batch_size", "batch size"), ("student_lr", "student lr"),
            ("teacher_lr", "teacher lr"), ("betas", "Adam betas"), ("seed", "seed"), ("textures", "anomaly textures"),
            ("foreground_method", "foreground mask"), ("train_images", "training images"),
            ("holdout_images", "held-out normal images"), ("train_seconds", "training seconds"), ("device", "device")]
    rows += [(label, training[key]) for key, label in keys if training.get(key) is not None]
    dataset = config.get("dataset") or {}
    if dataset:
        rows.append(("data", f"{Path(str(dataset.get('root', '?'))).name} / {dataset.get('category', '?')}"))
    rows.append(("rdexpert", config.get("rdexpert_version", "?")))
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def _threshold_section(config: dict) -> str:
    calibration = config.get("calibration") or {}
    if calibration.get("threshold") is None:
        return "No calibrated threshold is stored.\n"
    text = (
        f"Raw score threshold **{calibration['threshold']:.4f}**, from {calibration.get('source', 'normal images')}: "
        f"{calibration.get('rule', '')}. Normalised scores put it at 0.5 "
        f"({calibration.get('normalization', 'see rdexpert.calibration')}).\n"
    )
    if calibration.get("f1_threshold") is not None:
        text += f"\nF1-optimal threshold on the labelled test split: {calibration['f1_threshold']:.4f} (`threshold=\"f1\"`).\n"
    return text


def _card_header(license: str, *extra_tags: str) -> str:
    """The YAML front matter the Hub reads from a model card."""
    tags = ["anomaly-detection", "reverse-distillation", *extra_tags, "rdexpert"]
    return f"---\nlicense: {license}\nlibrary_name: rdexpert\ntags:\n" + "".join(f"- {t}\n" for t in tags) + "---\n"


def model_card(config: dict, repo_id: str, category: str, license: str) -> str:
    """The README.md published with a category: metrics, recipe, threshold, usage, license."""
    model = config["model"]
    notice = (config.get("license") or {}).get("attribution", "")
    return _card_header(license, "industrial-inspection") + f"""
# RD with Expert — `{category}` ({model['backbone']}, variant `{model['variant']}`)

A one-class anomaly detector for **{category}** images: trained on normal images
only, it gives every image a score and every pixel an anomaly value. Method:
*Unlocking the Potential of Reverse Distillation for Anomaly Detection* (Liu et al.,
AAAI 2025, arXiv 2412.07579), "RD with Expert", as reimplemented by `rdexpert`
{__version__}: a frozen expert, a trained teacher, and a student decoder with
Guided Information Injection.

## Test metrics

{_metrics_section(config)}
## Decision threshold

{_threshold_section(config)}
## Training recipe

{_recipe_section(config)}
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
    """Lay out what one category folder of the repo holds: config, weights, card, LICENSE/NOTICE; nothing else."""
    folder = Path(checkpoint)
    config = read_config(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise HubError(f"{folder} has no {WEIGHTS_NAME}; nothing to publish")
    category = category or (config.get("dataset") or {}).get("category")
    if not category or not re.fullmatch(_NAME, category):
        raise HubError(f"give a category folder name of letters, digits, '.', '_' or '-' (got {category!r}): --category")
    chosen = license_id(config, license)
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME, *EXTRA_FILES):
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
    category = category or (config.get("dataset") or {}).get("category")
    with tempfile.TemporaryDirectory(prefix="rdexpert-push-") as tmp:
        staging = stage_checkpoint(checkpoint, tmp, repo_id, category, license)
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if not api.file_exists(repo_id, "README.md"):
            api.upload_file(path_or_fileobj=repo_card(repo_id, license_id(config, license)).encode(),
                            path_in_repo="README.md", repo_id=repo_id, commit_message="Add repository card")
        commit = api.upload_folder(
            folder_path=staging, path_in_repo=category, repo_id=repo_id,
            commit_message=commit_message or f"Upload {category} ({config['model']['backbone']}, {config['model']['variant']})",
        )
    return commit.commit_url
