"""Predictor: a trained checkpoint (local folder or Hub address) applied to images, with calibrated decisions.

Images are read and fitted to the square input exactly as in training and testing (``rdexpert.data``:
squashed, or padded with their aspect ratio kept, as the checkpoint's ``input_fit`` says),
batched, and run on CUDA with autocast when present, on the CPU otherwise. The
inference-time switches of docs/design.md §3.4 (reference teacher/expert, GII gate
gated/open/closed) are arguments of :meth:`Predictor.predict`: no reload.
Decisions and normalised scores come from the checkpoint's calibration
(:mod:`rdexpert.inference.calibration`); whether an image looks like the trained product at
all comes from its out-of-distribution check (:mod:`rdexpert.inference.ood`), when it has one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from rdexpert.checkpoint.folder import CheckpointError
from rdexpert.checkpoint.pretrained import Checkpoint
from rdexpert.data import ImageLoadError, content_box, fit_image, image_to_tensor, list_images, load_image, to_rgb
from rdexpert.inference.calibration import Calibration
from rdexpert.inference.onnx_backend import BACKENDS, OnnxRuntimeForward
from rdexpert.inference.ood import OutOfDistribution, expert_is_reference, expert_pooled, load_ood, pooled_features
from rdexpert.inference.scoring import content_scores, score_images
from rdexpert.model import ExpertTeacherStudent
from rdexpert.runtime import resolve_device


@dataclass
class Prediction:
    """One image's result; every map is aligned with ``image`` (the picture as the network saw it).

    A "squash" checkpoint sees every image as S x S; a "pad" one sees it at its own aspect ratio, padded to
    S x S: ``image`` and the maps are then the picture's region only (e.g. S x 0.6 S), the padding cut off.
    """

    path: str | None
    image: np.ndarray  # the input the maps align with, uint8: S x S x 3 squashed, or the padded input's picture region
    score: float  # raw image score (max of the fused map, over the picture only)
    normalized_score: float  # calibrated: the threshold maps to 0.5
    label: int  # 1 = anomalous (score >= threshold)
    anomaly_map: np.ndarray  # float32, fused and blurred, the shape of ``image``
    scale_maps: list[np.ndarray]  # [stride 4, stride 8, stride 16] maps, float32, the shape of ``image``
    # not the trained product at all (then the verdict above means nothing); None: the checkpoint has no such check
    out_of_distribution: bool | None = None
    ood_score: float | None = None  # out-of-distribution distance / its threshold: above 1 = out of distribution
    # (height, width) of the image as given: pictures of the result are drawn back at this aspect ratio (None: unknown)
    original_size: tuple[int, int] | None = None

    def map_at_original_size(self) -> np.ndarray:
        """The anomaly map resized (bilinear) to ``original_size``, to lay over the image as given."""
        if not self.original_size:
            return self.anomaly_map
        height, width = self.original_size
        return cv2.resize(self.anomaly_map, (width, height), interpolation=cv2.INTER_LINEAR)


def _gather(inputs) -> tuple[list[tuple[str | None, object]], bool]:
    """Flatten ``inputs`` into ``(path or None, source)`` pairs; the flag says whether one item was given."""
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        if path.is_dir():  # recursive: good/, defect/ ... subfolders count
            files = list_images(path, recursive=True)
            if not files:
                raise ValueError(f"folder {path} holds no images (.png, .jpg, .bmp, .tif ...), in no subfolder either")
            return [(str(f), f) for f in files], False
        return [(str(path), path)], True
    if isinstance(inputs, (Image.Image, np.ndarray)):
        return [(None, inputs)], True
    if isinstance(inputs, (list, tuple)):
        return [item for entry in inputs for item in _gather(entry)[0]], False
    raise TypeError(
        f"cannot predict on a {type(inputs).__name__}: give an image path, a folder, a PIL image, "
        "a numpy array, or a list of those"
    )


def _load(source) -> np.ndarray:
    return load_image(source) if isinstance(source, Path) else to_rgb(source)


class Predictor:
    """Score images with a trained model and decide with its calibrated threshold.

    ``threshold`` (here and in :meth:`from_pretrained`): None or "calibrated" uses
    the checkpoint's normal-image threshold, "f1" the F1-optimal one stored by
    ``rdexpert test --save-metrics``, a number that raw score. Setting
    ``predictor.threshold`` later keeps the normalisation's lower anchor. ``ood``: the out-of-distribution
    check (:func:`rdexpert.inference.ood.load_ood`; :meth:`from_pretrained` loads the checkpoint's), None for none.
    ``backend``: "torch", or "onnxruntime" (CPU only; :mod:`rdexpert.inference.onnx_backend`: the same maps, faster on
    CPU, after a one-off export cached on disk) for requests with the default switches.
    """

    def __init__(
        self,
        model: ExpertTeacherStudent,
        config: dict,
        device: str | torch.device = "auto",
        threshold: str | float | None = None,
        ood: OutOfDistribution | None = None,
        backend: str = "torch",
        *,
        own_model: bool = False,
    ):
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.onnx = self._onnx_forward(model, backend, ood is not None)
        # inference-only: BatchNorm folded, channels-last (ExpertTeacherStudent.prepare_for_inference), on a copy
        # so that the caller's model can still be trained and saved; ``own_model``: the model is the Predictor's
        # alone (from_pretrained), prepared in place without the copy
        model = model.to(self.device)
        self.model = model.prepare_for_inference() if own_model else model.prepared_copy()
        self.config = config
        self.ood = ood
        try:
            calibration = Calibration.from_config(config)
        except ValueError as error:
            if not isinstance(threshold, (int, float)):
                raise CheckpointError(f"{error}; pass threshold=<raw score> to choose one") from None
            calibration = Calibration(float(threshold), min(0.0, float(threshold) - 1.0), "given by the caller", "set by hand")
        self.calibration = calibration.choose(threshold)

    def _onnx_forward(self, model: ExpertTeacherStudent, backend: str, pooled_expert: bool):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if backend == "torch":
            return None
        if self.device.type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU; use device='cpu' (got {self.device})")
        return OnnxRuntimeForward(model.to("cpu"), pooled_expert=pooled_expert)

    @property
    def backend(self) -> str:
        return "torch" if self.onnx is None else "onnxruntime"

    @classmethod
    def from_pretrained(cls, ref: str | Path, device: str = "auto", *, subfolder: str | None = None,
                        revision: str | None = None, token: str | None = None,
                        cache_dir: str | Path | None = None, **kwargs) -> "Predictor":
        """Load a checkpoint folder or ``ORG/NAME/CATEGORY[@REVISION]``; as in huggingface_hub, the category and
        the revision may also be given apart: ``from_pretrained("ORG/NAME", subfolder="metal_plate", revision=SHA)``.

        Keyword arguments: ``threshold`` and ``backend`` (see the class), ``pretrained_expert``
        (None: as trained; False: random expert, for tests only).
        """
        threshold = kwargs.pop("threshold", None)
        pretrained_expert = kwargs.pop("pretrained_expert", None)
        backend = kwargs.pop("backend", "torch")
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; accepted: subfolder, revision, token, cache_dir, "
                            "threshold, backend, pretrained_expert")
        device = resolve_device(device)
        checkpoint = Checkpoint.from_pretrained(ref, subfolder=subfolder, revision=revision, token=token,
                                                cache_dir=cache_dir, map_location=device,
                                                pretrained_expert=pretrained_expert)
        model, config = checkpoint.model, checkpoint.config
        ood = load_ood(checkpoint.folder, config, dims=sum(model.expert.channels))
        return cls(model, config, device, threshold, ood, backend, own_model=True)

    # -- calibration ------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.calibration = self.calibration.with_threshold(value)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def normalize(self, score: float | np.ndarray) -> float | np.ndarray:
        """Calibrated score in [0, 1]; the threshold maps to 0.5 (:mod:`rdexpert.inference.calibration`)."""
        return self.calibration.normalize(score)

    def map_to_normalized(self, anomaly_map: np.ndarray) -> np.ndarray:
        """The same normalisation applied to every pixel, for overlays whose 0.5 contour is the decision boundary."""
        return self.calibration.normalize(np.asarray(anomaly_map, dtype=np.float32))

    # -- prediction -------------------------------------------------------------------------
    def _forward(self, images: list[np.ndarray], reference: str, gate: str, backend: str | None):
        batch = torch.stack([image_to_tensor(image) for image in images])
        if self._use_onnx(reference, gate, backend):
            out = self.onnx(batch)
            fused, scales, scores, pooled = out.fused, out.scales, out.scores, out.pooled_expert
        else:
            reuse = self.ood is not None and expert_is_reference(self.model, reference)
            (scored,) = score_images(self.model, [batch], self.device, reference, gate, scales=True,
                                     pool_reference=pooled_features if reuse else None)
            fused, scales, scores, pooled = scored.maps, scored.scale_maps, scored.scores, scored.pooled_reference
        if self.ood is None:
            return fused, scales, scores, None
        if pooled is None:  # the same forward gave no expert features (or an ood check was set later): one more
            pooled = expert_pooled(self.model, batch, self.device)
        return fused, scales, scores, self.ood.scores(pooled)

    def _use_onnx(self, reference: str | None, gate: str, backend: str | None) -> bool:
        if backend not in (None, *BACKENDS):
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if self.onnx is None or backend == "torch":
            return False
        default = (reference or self.model.config.default_reference) == self.model.config.default_reference
        return default and gate == "gated"

    def iter_predict(
        self, inputs, reference: str | None = None, gate: str = "gated", batch_size: int = 16,
        skipped: list | None = None, backend: str | None = None,
    ) -> Iterator[Prediction]:
        """Like :meth:`predict` but yields one Prediction at a time, so a large folder never sits in memory."""
        return self._predict_items(_gather(inputs)[0], reference, gate, batch_size, skipped, backend)

    def predict(
        self, inputs, reference: str | None = None, gate: str = "gated", batch_size: int = 16,
        skipped: list | None = None, backend: str | None = None,
    ) -> Prediction | list[Prediction]:
        """Score a path, PIL image or array (-> Prediction), or a list or folder of them (-> list, folder sorted).

        A folder means every image inside it, subfolders included. ``reference``: "teacher" or "expert"
        (None: the checkpoint's default, see ``default_reference``); ``gate``: "gated", "open" or "closed"
        (docs/design.md §3.4).

        ``skipped``: for a folder or list, pass a list to go on past image files that cannot be read
        (corrupt, truncated, vanished): each is left out of the result and appended to ``skipped`` as
        ``(path, ImageLoadError)``. Without it the first unreadable file raises; a single image always
        raises, and so does an invalid in-memory array.

        ``backend``: None runs the predictor's backend where it can (ONNX Runtime serves the default
        switches only); "torch" forces PyTorch, e.g. to record the GII gates with :func:`rdexpert.model.capture_gates`.
        """
        items, single = _gather(inputs)
        predictions = list(self._predict_items(items, reference, gate, batch_size, None if single else skipped, backend))
        return predictions[0] if single else predictions

    def _load_chunk(self, chunk, skipped: list | None) -> tuple[list, list[np.ndarray], list[tuple[int, int]], list]:
        """The readable items of ``chunk``, their fitted inputs, their sizes as given and their content boxes."""
        kept, images, sizes, boxes = [], [], [], []
        fit = self.model.config.input_fit
        for path, source in chunk:
            try:
                image = _load(source)
            except ImageLoadError as error:
                if skipped is None or path is None:
                    raise
                skipped.append((path, error))
                continue
            kept.append((path, source))
            sizes.append(tuple(image.shape[:2]))
            boxes.append(content_box(image.shape[0], image.shape[1], self.image_size, fit))
            images.append(fit_image(image, self.image_size, fit))
        return kept, images, sizes, boxes

    def _predict_items(self, items, reference: str, gate: str, batch_size: int,
                       skipped: list | None = None, backend: str | None = None) -> Iterator[Prediction]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(items), batch_size):
            chunk, images, sizes, boxes = self._load_chunk(items[start : start + batch_size], skipped)
            if not chunk:
                continue
            fused, scales, _, ood_scores = self._forward(images, reference, gate, backend)
            scores = content_scores(fused, boxes)  # the padding (if any) is never scored
            for i, (path, _) in enumerate(chunk):
                score, box = float(scores[i]), boxes[i]
                ood_score = None if ood_scores is None else float(ood_scores[i])
                yield Prediction(
                    path=path,
                    image=np.ascontiguousarray(box.crop(images[i])),
                    score=score,
                    normalized_score=self.normalize(score),
                    label=self.calibration.label(score),
                    anomaly_map=box.crop(fused[i]).copy(),
                    scale_maps=[box.crop(scales[i, k]).copy() for k in range(scales.shape[1])],
                    out_of_distribution=None if ood_score is None else ood_score > 1.0,
                    ood_score=ood_score,
                    original_size=sizes[i],
                )
