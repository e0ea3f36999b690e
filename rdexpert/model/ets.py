"""The Expert-Teacher-Student network of RD with Expert, and its ablation variants."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from rdexpert.data.images import INPUT_FITS
from rdexpert.model.anomaly_map import BLUR_BORDERS, BLUR_SIGMA, AnomalyMaps, compute_anomaly_maps
from rdexpert.model.backbones import create_backbone
from rdexpert.model.decoder import Decoder
from rdexpert.model.fusion import fold_batch_norms
from rdexpert.model.gii import GATES
from rdexpert.model.ocbe import OCBE
from rdexpert.training.recipe import IMPROVED, PRE_RECIPE_SET

REFERENCES = ("teacher", "expert")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 2048
SIZE_MULTIPLE = 32  # the encoder's stride-16 features go through one more stride-2 stage in the OCBE
MAX_BLUR_SIGMA = 64.0
# bottlenecks in the OCBE and in each decoder stage: the decoder mirrors a ResNet, and the deepest stage of any
# ResNet (ResNet-152's third) has 36; RD and RD with Expert use 3 and (3, 4, 6)
MIN_BLOCKS, MAX_BLOCKS = 1, 36
# a timm model name, optionally with its pretrained tag ("wide_resnet50_2.tv_in1k"); no "hf-hub:" prefix or path, so
# that a checkpoint's config cannot make timm fetch an architecture from elsewhere
BACKBONE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}"
# a prepared model on the CPU runs at most this many input pixels at once (4 images at 256 px): bigger batches
# spill their activations out of the caches into freshly mapped memory and cost more per image (bench/latency.py)
CPU_CHUNK_PIXELS = 4 * 256 * 256
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Variant:
    """What one ablation variant trains (docs/design.md §3.4)."""

    train_teacher: bool  # teacher trained against the frozen expert, else teacher = expert
    expert_targets: bool  # student also distilled from the expert's features
    augmented_student: bool  # student also sees x_aug and must reproduce the clean features
    skip: str  # "none", "gated" (GII) or "plain"


VARIANTS = {
    "rd": Variant(train_teacher=False, expert_targets=False, augmented_student=False, skip="none"),
    "rd_expert": Variant(train_teacher=True, expert_targets=True, augmented_student=True, skip="none"),
    "rd_gii": Variant(train_teacher=False, expert_targets=False, augmented_student=True, skip="gated"),
    "full": Variant(train_teacher=True, expert_targets=True, augmented_student=True, skip="gated"),
    "full_plain": Variant(train_teacher=True, expert_targets=True, augmented_student=True, skip="plain"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (stored in a checkpoint's config.json)."""

    backbone: str = "tf_efficientnet_lite0"
    variant: str = "full"
    image_size: int = 256
    ocbe_blocks: int = 3
    decoder_blocks: tuple[int, int, int] = (3, 4, 6)
    blur_sigma: float = BLUR_SIGMA
    # what the student is scored against when a caller does not say: "teacher", or "expert" when
    # the training health check found the trained teacher no better than the expert (rdexpert.training.health)
    default_reference: str = "teacher"
    # scoring choices of the training recipe (rdexpert.training.recipe): the defaults are the current recipe's, so
    # ModelConfig() is the model `rdexpert train` builds; from_dict gives a checkpoint written before a field
    # existed the choice it was scored with then (LEGACY_SCORING)
    map_align_corners: bool = IMPROVED.map_align_corners
    blur_border: str = IMPROVED.blur_border
    precision: str = IMPROVED.precision  # "bf16": autocast on CUDA; "fp32": never
    # how images are fitted to image_size x image_size (rdexpert.data.fit_image): "squash" (resized) or "pad"
    # (aspect ratio kept, padded; scores and metrics then look at the picture only, never at the padding)
    input_fit: str = IMPROVED.input_fit

    def __post_init__(self):
        # bounded and typed before anything is allocated: a tampered config.json must fail here, not in malloc or deep
        # in a forward (rdexpert.checkpoint.schema checks a config.json's model section against these same bounds)
        if not isinstance(self.backbone, str) or not re.fullmatch(BACKBONE_NAME, self.backbone):
            raise ValueError(f"backbone must be a timm model name (letters, digits, '_', '.', '-'; at most 128), "
                             f"got {self.backbone!r}")
        if not isinstance(self.variant, str) or self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {sorted(VARIANTS)}")
        if not _is_int(self.image_size) or not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE \
                or self.image_size % SIZE_MULTIPLE:
            raise ValueError(f"image_size must be a multiple of {SIZE_MULTIPLE} in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], "
                             f"got {self.image_size!r}")
        if not _is_int(self.ocbe_blocks) or not MIN_BLOCKS <= self.ocbe_blocks <= MAX_BLOCKS:
            raise ValueError(f"ocbe_blocks must be an integer in [{MIN_BLOCKS}, {MAX_BLOCKS}], got {self.ocbe_blocks!r}")
        if not isinstance(self.decoder_blocks, (list, tuple)) or len(self.decoder_blocks) != 3 \
                or not all(_is_int(n) and MIN_BLOCKS <= n <= MAX_BLOCKS for n in self.decoder_blocks):
            raise ValueError(f"decoder_blocks must be 3 integers in [{MIN_BLOCKS}, {MAX_BLOCKS}], "
                             f"got {self.decoder_blocks!r}")
        if not _is_number(self.blur_sigma) or not 0 <= self.blur_sigma <= MAX_BLUR_SIGMA:
            raise ValueError(f"blur_sigma must be in [0, {MAX_BLUR_SIGMA}], got {self.blur_sigma!r}")
        if not isinstance(self.default_reference, str) or self.default_reference not in REFERENCES:
            raise ValueError(f"unknown default_reference {self.default_reference!r}; choose one of {REFERENCES}")
        if not all(isinstance(value, str) and value in allowed for value, allowed in (
                (self.blur_border, BLUR_BORDERS), (self.precision, PRECISIONS), (self.input_fit, INPUT_FITS))) \
                or not isinstance(self.map_align_corners, bool):
            raise ValueError(f"bad scoring choices: map_align_corners={self.map_align_corners!r} (bool), "
                             f"blur_border={self.blur_border!r} {BLUR_BORDERS}, precision={self.precision!r} "
                             f"{PRECISIONS}, input_fit={self.input_fit!r} {INPUT_FITS}")
        object.__setattr__(self, "decoder_blocks", tuple(self.decoder_blocks))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, section: dict) -> "ModelConfig":
        """A checkpoint's ``model`` section. A scoring field it lacks was not there when it was written, so it gets
        the choice rdexpert scored with then (LEGACY_SCORING), not today's default; unknown keys are an error."""
        if not isinstance(section, dict):
            raise ValueError(f"the model section must be a JSON object, got {type(section).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise ValueError(f"unknown model field(s) {unknown}; known: {sorted(names)}")
        return cls(**{**LEGACY_SCORING, **section})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# How a checkpoint written before the recipe's scoring fields existed was scored (rdexpert.training.recipe).
LEGACY_SCORING = {name: PRE_RECIPE_SET[name] for name in ("map_align_corners", "blur_border", "precision", "input_fit")}


@dataclass
class ETSOutput:
    """One forward: encoder features, student features and the anomaly maps."""

    reference: list[torch.Tensor]  # the features the student is scored against
    student: list[torch.Tensor]
    maps: AnomalyMaps

    @classmethod
    def concatenate(cls, parts: list[ETSOutput]) -> ETSOutput:
        """The outputs of consecutive chunks of one batch, as the batch's output."""
        def cat(lists):
            return [torch.cat(tensors) for tensors in zip(*lists)]

        maps = AnomalyMaps(scales=cat([p.maps.scales for p in parts]), fused=torch.cat([p.maps.fused for p in parts]),
                           score=torch.cat([p.maps.score for p in parts]))
        return cls(reference=cat([p.reference for p in parts]), student=cat([p.student for p in parts]), maps=maps)


class ExpertTeacherStudent(nn.Module):
    """Expert (frozen), teacher (trained for ``full``-type variants), and student (OCBE + decoder + GII).

    For variants with a frozen teacher the teacher *is* the expert, so no second
    copy is kept. Images in, [0, 1] RGB; normalisation happens in the backbones.
    """

    def __init__(self, config: ModelConfig = ModelConfig(), pretrained: bool = True):
        super().__init__()
        self.config = config
        self.variant = VARIANTS[config.variant]
        self.expert = create_backbone(config.backbone, pretrained=pretrained)
        self.expert.requires_grad_(False).eval()
        self.trained_teacher = copy.deepcopy(self.expert).requires_grad_(True) if self.variant.train_teacher else None
        channels = self.expert.channels
        self.ocbe = OCBE(channels, num_blocks=config.ocbe_blocks)
        self.decoder = Decoder(channels, self.ocbe.out_channels, skip=self.variant.skip, num_blocks=config.decoder_blocks)
        self.inference_only = False  # set by prepare_for_inference

    @property
    def teacher(self) -> nn.Module:
        return self.trained_teacher if self.trained_teacher is not None else self.expert

    def student_parameters(self):
        return list(self.ocbe.parameters()) + list(self.decoder.parameters())

    def train(self, mode: bool = True):
        """Like ``nn.Module.train`` but the expert always stays in eval mode."""
        if mode and self.inference_only:
            raise RuntimeError("this model was prepared for inference (BatchNorm folded); load the checkpoint again to train")
        super().train(mode)
        self.expert.eval()
        return self

    def student(self, teacher_features: list[torch.Tensor], gate: str = "gated") -> list[torch.Tensor]:
        """Decode ``[S1, S2, S3]`` from teacher features (they also feed the skip connections)."""
        return self.decoder(self.ocbe(teacher_features), teacher_features, gate)

    def set_default_reference(self, reference: str) -> None:
        """Make ``reference`` what :meth:`forward` uses when none is given (stored with the model config)."""
        self.config = replace(self.config, default_reference=reference)

    def forward(self, images: torch.Tensor, reference: str | None = None, gate: str = "gated") -> ETSOutput:
        """Full forward for inference.

        ``reference=None`` uses the model's ``config.default_reference``; ``"expert"`` scores the student against the frozen pretrained
        encoder instead of the trained teacher; ``gate`` switches GII between
        ``gated``, ``open`` (s = 1) and ``closed`` (s = 0). Neither needs retraining.
        """
        reference = reference or self.config.default_reference
        if reference not in REFERENCES:
            raise ValueError(f"unknown reference {reference!r}; choose one of {REFERENCES}")
        if gate not in GATES:
            raise ValueError(f"unknown GII gate {gate!r}; choose one of {GATES}")
        parts = self.batch_parts(images)
        if len(parts) > 1:
            return ETSOutput.concatenate([self._forward(part, reference, gate) for part in parts])
        return self._forward(images, reference, gate)

    def batch_parts(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The chunks :meth:`forward` runs one after the other: a prepared model on the CPU runs at most
        ``CPU_CHUNK_PIXELS`` input pixels at once; otherwise the batch is one part."""
        if not (self.inference_only and images.device.type == "cpu"):  # (nothing traced looks at the shape)
            return [images]
        chunk = max(1, CPU_CHUNK_PIXELS // (images.shape[-2] * images.shape[-1]))
        return list(images.split(chunk)) if len(images) > chunk else [images]

    def _forward(self, images: torch.Tensor, reference: str, gate: str) -> ETSOutput:
        teacher_features = self.teacher(images)
        student = self.student(teacher_features, gate)
        target = teacher_features if reference == "teacher" else self.expert(images)
        c = self.config
        maps = compute_anomaly_maps(student, target, images.shape[-2:], c.blur_sigma, c.map_align_corners, c.blur_border)
        return ETSOutput(reference=target, student=student, maps=maps)

    def prepare_for_inference(self) -> "ExpertTeacherStudent":
        """Make this model faster at inference, in place, and inference-only; returns it. Used by the Predictor.

        Every BatchNorm is folded into the convolution before it, backbone stages whose output no feature
        needs are dropped (:mod:`.fusion`), and the weights are stored channels-last (the OCBE's excepted),
        which oneDNN (CPU) and cuDNN run without layout reorders; on the CPU, large batches then run a few
        images at a time (``CPU_CHUNK_PIXELS``). The maps move by float rounding only
        (tests/test_speed_parity.py). Afterwards the model can no longer be trained or saved.
        """
        if self.inference_only:
            return self
        self.eval().requires_grad_(False)
        probe = torch.zeros(1, 3, 2 * SIZE_MULTIPLE, 2 * SIZE_MULTIPLE, device=next(self.parameters()).device)

        def run_every_part():
            self.student(self.teacher(probe), "gated")
            self.expert(probe)

        fold_batch_norms(self, run_every_part)
        self.to(memory_format=torch.channels_last)
        self.ocbe.to(memory_format=torch.contiguous_format)  # see OCBE.forward
        self.inference_only = True
        return self

    def prepared_copy(self) -> "ExpertTeacherStudent":
        """A copy prepared for inference (:meth:`prepare_for_inference`); this model stays trainable and savable."""
        return self if self.inference_only else copy.deepcopy(self).prepare_for_inference()

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Teacher (if trained) and student weights; the expert is rebuilt from its pretrained source."""
        if self.inference_only:
            raise RuntimeError("this model was prepared for inference (BatchNorm folded); save the checkpoint it came from")
        return {k: v for k, v in self.state_dict().items() if not k.startswith("expert.")}
