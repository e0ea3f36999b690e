"""The names a checkpoint folder's files carry and the error for a broken one (no torch, no rdexpert imports).

Kept apart from :mod:`rdexpert.checkpoint.folder` so that the Hub resolver, which
fetches checkpoint folders, needs nothing of the model to do it.
"""

from __future__ import annotations

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OOD_NAME = "ood.safetensors"  # the out-of-distribution statistic (rdexpert.inference.ood), when fitted
FORMAT = "rdexpert-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or does not fit the model it describes."""
