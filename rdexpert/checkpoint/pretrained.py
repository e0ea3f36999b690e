"""The Checkpoint object: a trained model with its config.json, loaded, saved and published the huggingface_hub way.

Why a class: every caller used to unpack ``(model, config)`` and re-parse the dict. A :class:`Checkpoint` keeps
both with the facts read from them (:attr:`info`), and has the three verbs of huggingface_hub's
``ModelHubMixin`` with its arguments passed through (``token``, ``cache_dir``, ``revision``, ``subfolder``).
It does not subclass the mixin: the mixin puts one model at a repository's root, while rdexpert's repositories
hold one checkpoint per category subfolder with a model card each (:mod:`rdexpert.hub`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rdexpert.checkpoint.folder import CheckpointInfo, load_checkpoint, save_checkpoint
from rdexpert.hub.resolve import hub_address
from rdexpert.model import ExpertTeacherStudent

# sections save_checkpoint writes from the model itself; the rest of config.json is carried over by save_pretrained
_MODEL_SECTIONS = ("format", "format_version", "rdexpert_version", "model", "backbone", "input", "weights_sha256",
                   "source")


@dataclass
class Checkpoint:
    """A model and the config.json it was saved with (plus ``config["source"]``: where it was read from)."""

    model: ExpertTeacherStudent
    config: dict

    @classmethod
    def from_pretrained(cls, ref: str | Path, *, subfolder: str | None = None, revision: str | None = None,
                        token: str | None = None, cache_dir: str | Path | None = None,
                        map_location: str | torch.device = "cpu", pretrained_expert: bool | None = None) -> "Checkpoint":
        """A local checkpoint folder or a Hub address ``ORG/NAME/CATEGORY[@REVISION]`` (or ``ORG/NAME`` with
        ``subfolder=`` and ``revision=``). ``pretrained_expert`` None rebuilds the expert as it was trained."""
        if subfolder is not None or revision is not None:
            ref = hub_address(str(ref), subfolder, revision)
        model, config = load_checkpoint(ref, pretrained_expert=pretrained_expert, map_location=map_location,
                                        token=token, cache_dir=cache_dir)
        return cls(model, config)

    @property
    def info(self) -> CheckpointInfo:
        return CheckpointInfo.from_config(self.config)

    @property
    def source(self) -> dict:
        return self.config.get("source") or {}

    @property
    def folder(self) -> Path | None:
        """The folder it was read from (a Hub checkpoint's is in the local cache), None for one never saved."""
        path = self.source.get("path")
        return Path(path) if path else None

    @property
    def is_local(self) -> bool:
        """Read from a folder of its own (not the Hub cache): writing metrics into it is allowed."""
        return self.source.get("type") == "local"

    def save_pretrained(self, folder: str | Path, **sections) -> Path:
        """Write the weights and config.json into ``folder``; the stored sections (training, calibration, ...) are
        kept unless ``sections`` replaces them."""
        kept = {k: v for k, v in self.config.items() if k not in _MODEL_SECTIONS}
        return save_checkpoint(self.model, folder, **{**kept, **sections})

    def push_to_hub(self, repo_id: str, *, category: str | None = None, license: str | None = None,
                    private: bool = False, token: str | None = None, commit_message: str | None = None,
                    dataset_id: str | None = None) -> str:
        """Publish as ``repo_id/CATEGORY/`` with its model card (:func:`rdexpert.hub.publish.push_to_hub`)."""
        from rdexpert.hub.publish import push_to_hub

        if self.folder is None:
            raise ValueError("save the checkpoint first (save_pretrained): the Hub gets the files of its folder")
        return push_to_hub(self.folder, repo_id, category, license, private=private, token=token,
                           commit_message=commit_message, dataset_id=dataset_id)

    def prepared_model(self) -> ExpertTeacherStudent:
        """A copy of the model prepared for inference (BatchNorm folded, channels-last; it can no longer train or be
        saved); this checkpoint's own model is left as it is."""
        return self.model.prepared_copy()
