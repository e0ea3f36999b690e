"""Training health check: is the trained teacher still better than the expert it came from?

RD with Expert trains the teacher away from the frozen expert inside synthetic
defects and keeps it on the expert elsewhere. Nothing in the losses says the
trained teacher stays a *better* reference than the expert on normal images of
a new product; when it drifts, the student disagrees with it everywhere and the
model fails (README "The teacher's health"). This check measures that during training, on data the
method already has and never on the test split:

* the held-out *normal training* images (clean), and
* synthetic anomalies made on them with a fixed seed (``draws`` per image),

and reports, per check:

``agreement``
    mean over pixels and scales of 1 - cos(T_k(x), E_k(x)) on the clean held-out
    images, eval-mode teacher: 0 = teacher identical to the expert on normal content.
``separation_teacher`` / ``separation_expert``
    pixel AUROC of the anomaly map against the synthetic masks, scoring the student
    against the teacher (the default) or against the frozen expert. The teacher must
    not lose to the expert here by more than a margin; :func:`choose_reference` turns that
    into the checkpoint's default reference.
``image_separation_teacher`` / ``image_separation_expert``
    image AUROC of clean held-out images vs their synthetic-anomaly twins.
``normal_score_teacher`` / ``normal_score_expert``
    mean image score of the clean held-out images.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass

import numpy as np
import torch

from rdexpert.data import content_box, fit_image, load_image, pad_to_square
from rdexpert.evaluation.metrics import roc_auc
from rdexpert.inference.scoring import score_images
from rdexpert.model.anomaly_map import pixel_cosine_distance
from rdexpert.runtime import autocast
from rdexpert.synthesis import AnomalySynthesizer

HEALTH_SEED = 20_250_101  # fixed: the same synthetic check set at every check of a run
# How much pixel AUROC the trained teacher may lose to the expert on the check before the expert
# becomes the default reference. Synthetic defects are only a proxy: in bench/robustness.py
# (7 conditions x 3 seeds) the default teacher lost the check by up to 0.016 while matching or beating the
# expert on every row's real test split (3-seed means, P-AUROC +0.0 to +4.4 points); a drifted teacher
# (tests/test_health.py) loses it by ~0.2. The margin keeps the first and catches the second.
REFERENCE_MARGIN = 0.02
FAINT_BETA = (0.7, 0.9)  # the faint group's blends: x*(1-M) + (1-beta)*tex*M + beta*x*M keeps 70-90 % of x
FAINT_EXTENT = 0.08  # ... within 8 % of the picture's shorter side from one point (at most ~2 % of its area)
# How much pixel AUROC the teacher may lose on the faint anomalies (validated in bench/categories.py)
FAINT_MARGIN = 0.01
HEALTH_MAX_IMAGES = 16  # held-out images used by the check (cost: 4 forwards of images x (1 + draws))


VOID_REDRAWS = 20  # redraws of a void synthetic anomaly before it is kept anyway (the released mask rule can be empty)
VOID_CHANGE = 2 / 255  # an anomaly whose pixels change less than this on average is invisible: void


def is_void(anomaly, image: np.ndarray) -> bool:
    """Whether a synthetic anomaly changes nothing that can be seen: an empty mask, or a blend that leaves the
    masked pixels (nearly) as they were."""
    inside = np.asarray(anomaly.mask) > 0.5
    if not inside.any():
        return True
    return float(np.abs(anomaly.image[inside] - image[inside]).mean()) < VOID_CHANGE


def _draw_anomalies(pictures: list[np.ndarray], foregrounds: list[np.ndarray], synthesizer: AnomalySynthesizer,
                    draws: int, seed: int):
    """``draws`` synthetic anomalies per picture (its foreground given), none of them void: (images, masks, shapes)."""
    rng = np.random.default_rng(seed)
    augmented, masks, shapes = [], [], []
    for image, foreground in zip(pictures, foregrounds):
        for _ in range(max(1, draws)):
            anomaly = synthesizer(image, rng, foreground)
            for _ in range(VOID_REDRAWS):  # a void draw (empty mask, or no visible change) would count as a
                if not is_void(anomaly, image):  # "missed" anomaly: measure real ones only
                    break
                anomaly = synthesizer(image, rng, foreground)
            augmented.append(anomaly.image)
            masks.append(anomaly.mask)
            shapes.append(image.shape[:2])
    return augmented, masks, shapes


def faint(synthesizer: AnomalySynthesizer) -> AnomalySynthesizer:
    """The same synthesizer making subtle defects: faint blends (beta in :data:`FAINT_BETA`: 70-90 % of the normal
    image kept) in a small region (:data:`FAINT_EXTENT`), at the contrast and size of most real ones, where a
    reference's noise on normal content decides whether they are seen."""
    copy = _copy.copy(synthesizer)
    copy.beta_range, copy.max_extent = FAINT_BETA, FAINT_EXTENT
    return copy


@dataclass(frozen=True)
class HealthSet:
    """Clean held-out normal images and their synthetic-anomaly twins, at model resolution: the usual blends
    (``augmented``) and, for the reference check, faint ones (``faint``)."""

    clean: torch.Tensor  # (N, 3, S, S) in [0, 1]
    augmented: torch.Tensor  # (N * draws, 3, S, S)
    masks: torch.Tensor  # (N * draws, S, S) in {0, 1}
    # where each picture lies in its square (top, left, height, width): padding is never scored
    clean_boxes: torch.Tensor | None = None  # (N, 4)
    augmented_boxes: torch.Tensor | None = None  # (N * draws, 4)
    faint: torch.Tensor | None = None  # (N * draws, 3, S, S): faint blends (beta in FAINT_BETA)
    faint_masks: torch.Tensor | None = None
    faint_boxes: torch.Tensor | None = None

    @classmethod
    def build(cls, images: list[np.ndarray], synthesizer: AnomalySynthesizer, draws: int = 2,
              max_images: int = HEALTH_MAX_IMAGES, seed: int = HEALTH_SEED, size: int | None = None,
              with_faint: bool = True) -> "HealthSet":
        """``images``: HxWx3 RGB arrays (uint8, or float in [0, 1]), already at model resolution.

        With ``size``, ``images`` are pictures before padding (``fit_image(..., padded=False)``): the
        anomalies are made on the picture, then images and masks are padded to ``size`` like the model's
        input, so no anomaly lands in the padding. ``with_faint``: also make the faint group (its own seed,
        so the usual group is the same either way).
        """
        if not images:
            raise ValueError("the health check needs at least one held-out normal image")
        chosen = [np.asarray(i, np.float32) / 255.0 if np.asarray(i).dtype == np.uint8 else np.asarray(i, np.float32)
                  for i in images[:max_images]]
        foregrounds = [synthesizer.foreground_mask(image) for image in chosen]  # once: both groups use them
        groups = {"augmented": _draw_anomalies(chosen, foregrounds, synthesizer, draws, seed)}
        if with_faint:
            groups["faint"] = _draw_anomalies(chosen, foregrounds, faint(synthesizer), draws, seed + 1)
        as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        box_of = lambda shape: tuple(content_box(*shape, size, "pad"))  # noqa: E731
        fields = {}
        for name, (pictures, masks, shapes) in groups.items():
            mask_name = "masks" if name == "augmented" else f"{name}_masks"
            if size is not None:
                fields[f"{name}_boxes"] = torch.tensor([box_of(shape) for shape in shapes])
                pictures = [pad_to_square(i, size) for i in pictures]
                masks = [pad_to_square(np.asarray(m, np.float32), size, fill="zero") for m in masks]
            fields[name], fields[mask_name] = as_tensor(pictures), torch.from_numpy(np.stack(masks))
        if size is not None:
            fields["clean_boxes"] = torch.tensor([box_of(i.shape[:2]) for i in chosen])
            chosen = [pad_to_square(i, size) for i in chosen]
        return cls(as_tensor(chosen), **fields)

    def __len__(self) -> int:
        return self.clean.shape[0]

    def batches(self, which: str, batch_size: int) -> list:
        """``clean``, ``augmented`` or ``faint`` images in batches, with their content boxes when there are any."""
        images, boxes = getattr(self, which), getattr(self, f"{which}_boxes")
        if boxes is None:
            return list(images.split(batch_size))
        return [{"image": x, "box": b} for x, b in zip(images.split(batch_size), boxes.split(batch_size))]

    def anomaly_pixels(self, which: str = "augmented") -> tuple[np.ndarray, np.ndarray]:
        """(inside, mask) of the ``augmented`` or ``faint`` twins, (N * draws, S, S) bool each: which pixels are
        picture, not padding, and which of them are anomalous."""
        masks = (self.masks if which == "augmented" else getattr(self, f"{which}_masks")).numpy() > 0.5
        boxes = getattr(self, f"{which}_boxes")
        inside = np.ones(masks.shape, bool)
        if boxes is not None:
            inside[:] = False
            for plane, (top, left, height, width) in zip(inside, boxes.tolist()):
                plane[top:top + height, left:left + width] = True
        return inside, masks


def health_set_of(samples: list, model_config, synthesizer: AnomalySynthesizer, draws: int = 2,
                  seed: int = HEALTH_SEED, with_faint: bool = True) -> HealthSet:
    """The check set of ``samples`` (image files) as the model sees them (squashed, or padded: ``input_fit``)."""
    size, fit = model_config.image_size, model_config.input_fit
    pictures = [fit_image(load_image(s.path), size, fit, padded=fit == "squash") for s in samples]
    return HealthSet.build(pictures, synthesizer, draws=draws, max_images=len(pictures), seed=seed,
                           size=None if fit == "squash" else size, with_faint=with_faint)


def _scored(model, batches: list, reference: str, device: torch.device):
    """Maps and scores of ``batches`` against ``reference``, through the package's one scoring loop."""
    scored = list(score_images(model, batches, device, reference=reference))
    return np.concatenate([b.maps for b in scored]), np.concatenate([b.scores for b in scored])


@torch.no_grad()
def check_health(model, health_set: HealthSet, device: torch.device, batch_size: int = 8) -> dict[str, float]:
    """Run the check on ``model`` (put in eval mode for the check, restored after)."""
    was_training = model.training
    model.eval()
    try:
        with autocast(device, model.config.precision):
            result: dict[str, float] = {}
            distances = []
            for batch in health_set.clean.split(batch_size):
                teacher, expert = model.teacher(batch.to(device)), model.expert(batch.to(device))
                distances.append(torch.stack([pixel_cosine_distance(t, e).mean((1, 2))
                                              for t, e in zip(teacher, expert)]).mean(0))
            result["agreement"] = float(torch.cat(distances).mean())
            labels = np.r_[np.zeros(len(health_set)), np.ones(len(health_set.augmented))]
            for reference in ("teacher", "expert"):
                inside, masks = health_set.anomaly_pixels("augmented")
                aug_maps, aug_scores = _scored(model, health_set.batches("augmented", batch_size), reference, device)
                _, clean_scores = _scored(model, health_set.batches("clean", batch_size), reference, device)
                result[f"separation_{reference}"] = roc_auc(aug_maps[inside], masks[inside])
                result[f"image_separation_{reference}"] = roc_auc(np.r_[clean_scores, aug_scores], labels)
                result[f"normal_score_{reference}"] = float(clean_scores.mean())
                if health_set.faint is not None:
                    inside, masks = health_set.anomaly_pixels("faint")
                    faint_maps, _ = _scored(model, health_set.batches("faint", batch_size), reference, device)
                    result[f"faint_separation_{reference}"] = roc_auc(faint_maps[inside], masks[inside])
    finally:
        model.train(was_training)
    return result


def choose_reference(health: dict[str, float], margin: float = REFERENCE_MARGIN,
                     faint_margin: float = FAINT_MARGIN) -> tuple[str, str]:
    """The checkpoint's default reference from a final health check, and why (stored in config.json).

    The trained teacher stays the reference unless it loses to the frozen expert on the usual synthetic
    anomalies by more than ``margin`` or on the faint ones by more than ``faint_margin`` (pixel AUROC): a
    teacher whose features turned noisy on normal content hides faint defects first (README "Every product")."""
    teacher, expert = health["separation_teacher"], health["separation_expert"]
    faint_t, faint_e = health.get("faint_separation_teacher"), health.get("faint_separation_expert")
    text = f"pixel AUROC teacher {teacher:.3f} vs expert {expert:.3f}"
    if faint_t is not None:
        text += f"; on faint anomalies {faint_t:.3f} vs {faint_e:.3f}"
    if teacher < expert - margin:
        return "expert", (f"trained teacher lost to the frozen expert on the held-out synthetic check ({text}: more "
                          f"than {margin:.2f} below); scoring against the expert")
    if faint_t is not None and faint_t < faint_e - faint_margin:
        return "expert", (f"trained teacher lost to the frozen expert on faint held-out synthetic anomalies ({text}: "
                          f"more than {faint_margin:.2f} below on the faint ones); scoring against the expert")
    return "teacher", (f"trained teacher holds up on the held-out synthetic check ({text}; allowed loss "
                       f"{margin:.2f}, {faint_margin:.2f} on the faint ones)")


def reference_for(health: dict[str, float], reference_switch: str = "health_check") -> tuple[str, str, str]:
    """(default reference, the check's verdict, why) for a trained teacher: the verdict of :func:`choose_reference`,
    applied only when the recipe lets the check switch (``reference_switch``, rdexpert.training.recipe row 14); the released
    code always keeps the teacher."""
    verdict, reason = choose_reference(health)
    if reference_switch == "health_check" or verdict == "teacher":
        return verdict, verdict, reason
    return "teacher", verdict, reason + ("; kept the trained teacher all the same (recipe choice reference_switch=never, "
                                         "as the released code)")
