"""Out of distribution: does an image look like the trained product at all, to the frozen expert?

The anomaly score answers "is this product defective?" and only means something
for the product the model was trained on: any other picture (another product, a
texture, a photo of a bottle) reads as maximally anomalous. This module answers
the question before it, with a statistic that defects barely move:

* each image becomes one vector: the frozen **expert**'s three feature maps
  (strides 4, 8, 16) averaged over space and concatenated (176 numbers for
  EfficientNet-Lite0, 1792 for WideResNet-50). A defect covers a small part of the
  image, so it moves this average little; another product moves all of it;
* a Gaussian is fitted to the normal training images: mean, and a Ledoit-Wolf
  shrunk covariance (a few dozen images cannot estimate hundreds of dimensions),
  kept as its top :data:`MAX_COMPONENTS` principal directions plus one variance for
  everything else (probabilistic PCA; exact when there are fewer training images
  than that, since the sample covariance then has no more directions);
* the statistic is the Mahalanobis distance under it, and the threshold is
  :data:`THRESHOLD_FACTOR` x the largest distance of the held-out normal images
  (the ones the trainer calibrates the anomaly threshold on). With none held out,
  the training images (up to :data:`LEAVE_ONE_OUT_IMAGES`) are each scored by a fit
  without them (leave-one-out), which is what held-out images would give.

``ood_score`` = distance / threshold: above 1 the image is out of distribution.
The statistic is stored beside the weights as ``ood.safetensors`` and described in
config.json's ``"ood"`` section, with the file's SHA-256; a checkpoint without it
simply has no out-of-distribution check (None). Only safetensors and JSON are read.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rdexpert.checkpoint.folder import file_sha256, load_checkpoint, training_split, update_config
from rdexpert.checkpoint.format import OOD_NAME, CheckpointError
from rdexpert.checkpoint.io import read_tensors, write_tensors
from rdexpert.inference.scoring import sample_batches
from rdexpert.model import ExpertTeacherStudent
from rdexpert.runtime import autocast, resolve_device

log = logging.getLogger(__name__)

MAX_COMPONENTS = 64  # principal directions kept: 64 x 1792 float32 = 0.46 MB for WideResNet-50
# Threshold = this x the largest held-out normal distance. Measured on the shipped metal_plate checkpoint
# (bench/results/ood.md): its 81 real test defects reach at most 3.9 x the held-out maximum (4.5 x over 100
# random 49/5 re-splits of the normal training images), its test normals 1.4 x, while the nearest of 1200 DTD
# textures lies at 9.0 x (6.7 x over the re-splits). 5.5 sits mid-gap on a log scale (4.5 x 1.22, 6.7 / 1.22):
# generous to defects of the product (they are local, the pooled features move little), yet anything that moves
# them as far as a texture does is flagged. One product and one backbone: re-measure with bench/ood.py.
THRESHOLD_FACTOR = 5.5
MIN_FIT_IMAGES = 2  # a covariance needs two images; leave-one-out calibration one more
LEAVE_ONE_OUT_IMAGES = 64  # at most this many training images are scored leave-one-out (one fit each)


def pooled_features(features: list[torch.Tensor]) -> torch.Tensor:
    """(B, C1 + C2 + C3): each feature map averaged over space, concatenated; float32."""
    return torch.cat([f.float().mean(dim=(2, 3)) for f in features], dim=1)


def expert_pooled(model: ExpertTeacherStudent, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pooled expert features of a (B, 3, S, S) batch in [0, 1] (one expert forward)."""
    with torch.inference_mode(), autocast(device, model.config.precision):
        return pooled_features(model.expert(images.to(device))).cpu()


def pooled_samples(model: ExpertTeacherStudent, samples: list, image_size: int, device: torch.device) -> torch.Tensor:
    """Pooled expert features of labelled samples, in order."""
    batches = sample_batches(samples, image_size, fit=model.config.input_fit)
    return torch.cat([expert_pooled(model, batch["image"], device) for batch in batches])


@dataclass(frozen=True)
class FeatureGaussian:
    """A shrunk Gaussian: ``mean``, top principal ``components`` (D, k) with their ``variances``, and one
    ``residual_variance`` for the D - k directions left out."""

    mean: torch.Tensor
    components: torch.Tensor
    variances: torch.Tensor
    residual_variance: float
    shrinkage: float  # Ledoit-Wolf weight of the isotropic target: 0 = sample covariance, 1 = sphere

    @classmethod
    def fit(cls, features: torch.Tensor, max_components: int = MAX_COMPONENTS) -> FeatureGaussian:
        """Ledoit & Wolf (2004) shrinkage towards a sphere, all in the n x n Gram space (n images << D dims)."""
        x = features.double()
        n, dims = x.shape
        if n < MIN_FIT_IMAGES:
            raise ValueError(f"fitting a feature Gaussian needs at least {MIN_FIT_IMAGES} images, got {n}")
        mean = x.mean(0)
        z = x - mean
        gram = z @ z.T / n  # its non-zero eigenvalues are the sample covariance's
        scale = float(gram.trace()) / dims  # the sphere's variance
        if scale <= 0:
            raise ValueError("every training image gives the same expert features: no spread to fit")
        covariance_norm = float((gram**2).sum())  # ||S||_F^2
        distance = covariance_norm - 2 * scale * float(gram.trace()) + scale**2 * dims  # ||S - scale I||^2
        # mean over images of ||z_i z_i^T - S||^2 / n, with z_i^T S z_i = n * sum_j gram_ij^2
        spread = float(((n * gram.diagonal()) ** 2 - 2 * n * (gram**2).sum(1) + covariance_norm).sum()) / n**2
        shrinkage = 1.0 if distance <= 0 else min(spread, distance) / distance
        eigenvalues, vectors = torch.linalg.eigh(gram)
        keep = eigenvalues > eigenvalues.max() * 1e-10
        eigenvalues, vectors = eigenvalues[keep].flip(0), vectors[:, keep].flip(1)
        k = min(max_components, len(eigenvalues), dims)
        components = z.T @ vectors[:, :k] / torch.sqrt(n * eigenvalues[:k])
        shrunk = (1 - shrinkage) * eigenvalues + shrinkage * scale
        rest = dims - k  # the other directions: the rest of the sample variance plus the sphere's share
        residual = ((1 - shrinkage) * float(eigenvalues[k:].sum()) / rest + shrinkage * scale) if rest else scale
        return cls(mean.float(), components.float(), shrunk[:k].float(), float(residual), float(shrinkage))

    def distances(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of (B, D) ``features``."""
        z = torch.as_tensor(features).double() - self.mean.double()
        projected = z @ self.components.double()
        residual = ((z**2).sum(1) - (projected**2).sum(1)).clamp_min(0)
        squared = (projected**2 / self.variances.double()).sum(1) + residual / self.residual_variance
        return squared.sqrt().numpy()

    @property
    def dims(self) -> int:
        return self.mean.numel()


def leave_one_out_distances(features: torch.Tensor, limit: int = LEAVE_ONE_OUT_IMAGES) -> np.ndarray:
    """The first ``limit`` images' distances, each under a Gaussian fitted on all the others: what held-out
    images would give."""
    rows = range(len(features))
    return np.array([FeatureGaussian.fit(features[[j for j in rows if j != i]]).distances(features[i:i + 1])[0]
                     for i in rows[:limit]])


@dataclass(frozen=True)
class OutOfDistribution:
    """The fitted check: distances above ``threshold`` are out of distribution."""

    gaussian: FeatureGaussian
    threshold: float
    info: dict = field(default_factory=dict)  # how it was fitted and calibrated (config.json's "ood" section)

    def scores(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """distance / threshold per image: above 1 = out of distribution."""
        return self.gaussian.distances(features) / self.threshold

    def section(self, sha256: str) -> dict:
        return {"file": OOD_NAME, "sha256": sha256, **self.info, "threshold": self.threshold}

    def to_tensors(self) -> dict[str, torch.Tensor]:
        g = self.gaussian
        return {"mean": g.mean, "components": g.components, "variances": g.variances,
                "residual_variance": torch.tensor([g.residual_variance], dtype=torch.float32)}


def enough_images(train: int, held_out: int) -> bool:
    """Whether ``train`` images (and ``held_out`` ones) can fit and calibrate the check; warns when not."""
    if train >= MIN_FIT_IMAGES + (0 if held_out else 1):
        return True
    warnings.warn(f"{train} training image(s){'' if held_out else ' and none held out'}: too few to fit the "
                  "out-of-distribution check; the checkpoint has none", UserWarning, stacklevel=3)
    return False


def calibrate_ood(train: torch.Tensor, held_out: torch.Tensor | None, factor: float = THRESHOLD_FACTOR,
                  ) -> OutOfDistribution | None:
    """Fit on ``train`` features and put the threshold at ``factor`` x the largest held-out distance.

    Without held-out features the training images are scored leave-one-out. None (with a warning) when
    there are too few images to fit.
    """
    has_holdout = held_out is not None and len(held_out) > 0
    if not enough_images(len(train), len(held_out) if has_holdout else 0):
        return None
    gaussian = FeatureGaussian.fit(train)
    if has_holdout:
        distances, source = gaussian.distances(held_out), "held-out normal training images"
    else:
        distances = leave_one_out_distances(train)
        source = "the training images, each scored by a fit without it (leave-one-out: none were held out)"
    threshold = factor * float(distances.max())
    info = {
        "method": "Mahalanobis distance of the frozen expert's spatially averaged features (strides 4, 8, 16 "
                  "concatenated); Ledoit-Wolf shrunk covariance as top principal directions + one residual variance",
        "features": gaussian.dims, "components": int(gaussian.components.shape[1]),
        "shrinkage": round(gaussian.shrinkage, 6),
        "rule": f"{factor:g} x the largest distance of {len(distances)} calibration images",
        "fitted_images": len(train), "calibration_images": len(distances), "source": source,
        "calibration_distances": [round(float(d), 4) for d in distances],
        "score": "ood_score = distance / threshold; above 1 = out of distribution",
    }
    return OutOfDistribution(gaussian, threshold, info)


def fit_ood(model: ExpertTeacherStudent, train: list, holdout: list, image_size: int,
            device: torch.device) -> OutOfDistribution | None:
    """The check for a trained model, from its normal training samples and the held-out ones."""
    if not enough_images(len(train), len(holdout)):
        return None
    features = pooled_samples(model, list(train) + list(holdout), image_size, device)
    return calibrate_ood(features[:len(train)], features[len(train):] if holdout else None)


def save_ood(ood: OutOfDistribution, folder: str | Path) -> dict:
    """Write ``ood.safetensors`` (atomically); returns the config section naming its hash.

    Write the file first and the config after, as with the weights: an interrupted save leaves a hash
    that does not match, and loading then leaves the check out instead of pairing it with another config.
    """
    path = write_tensors(Path(folder) / OOD_NAME, ood.to_tensors(), metadata={"format": "pt"})
    return ood.section(file_sha256(path))


def load_ood(folder: str | Path, config: dict, dims: int | None = None) -> OutOfDistribution | None:
    """The stored check of a checkpoint; None when it has none. A missing, replaced or malformed file is
    logged as a warning and also gives None: the anomaly verdict does not depend on it."""
    section = config.get("ood")
    if not isinstance(section, dict):
        return None
    path = Path(folder) / OOD_NAME  # always this name: a config cannot point the loader elsewhere

    def unavailable(why: str) -> None:  # returns None: the check is left out
        log.warning("%s: out-of-distribution check unavailable: %s; re-fit it with `rdexpert fit-ood --checkpoint %s`",
                    path, why, folder)

    if not path.is_file():
        return unavailable("the file is missing")
    if section.get("sha256") != file_sha256(path):
        return unavailable("it is not the file config.json was saved with (SHA-256 differs)")
    try:
        tensors = read_tensors(path)
        gaussian = FeatureGaussian(tensors["mean"], tensors["components"], tensors["variances"],
                                   float(tensors["residual_variance"][0]), float(section.get("shrinkage", 0.0)))
        threshold = float(section["threshold"])
    except Exception as error:  # safetensors' own errors, a missing tensor or key
        return unavailable(f"unreadable ({type(error).__name__}: {error})")
    shapes_fit = gaussian.components.shape == (gaussian.dims, gaussian.variances.numel())
    if not shapes_fit or (dims is not None and gaussian.dims != dims) or not threshold > 0:
        return unavailable(f"it does not fit the model's {dims} pooled expert features")
    info = {k: v for k, v in section.items() if k not in ("file", "sha256", "threshold")}
    return OutOfDistribution(gaussian, threshold, info)


def fit_checkpoint_ood(folder: str | Path, data_root: str | Path | None = None, device: str = "auto",
                       write: bool = True) -> OutOfDistribution | None:
    """Fit the check for an existing checkpoint from its own training data; ``write`` stores it in the folder."""
    if not Path(folder).is_dir():
        raise CheckpointError(f"{folder} is not a local checkpoint folder (the check is written into it)")
    device = resolve_device(device)
    model, config = load_checkpoint(folder, map_location=device)
    train, holdout = training_split(config, data_root)
    ood = fit_ood(model, train, holdout, model.config.image_size, device)
    if write and ood is not None:
        update_config(folder, ood=save_ood(ood, folder))
    return ood


def expert_is_reference(model: ExpertTeacherStudent, reference: str | None) -> bool:
    """Whether a scoring forward with ``reference`` already runs the expert as its reference (reference
    "expert", or a variant whose teacher is the expert): the check then needs no forward of its own."""
    return (reference or model.config.default_reference) == "expert" or model.trained_teacher is None
