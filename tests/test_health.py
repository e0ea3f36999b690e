"""The teacher's health: BatchNorm kept on the expert's statistics, the held-out check, the default reference."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TIRE, needs_tire, training_pictures

from rdexpert.checkpoint.folder import CheckpointInfo, load_checkpoint, read_config
from rdexpert.data import list_samples, load_image, resize_image, split_holdout
from rdexpert.model import ExpertTeacherStudent, ModelConfig
from rdexpert.synthesis import AnomalySynthesizer
from rdexpert.training.health import FAINT_MARGIN, REFERENCE_MARGIN, HealthSet, check_health, choose_reference
from rdexpert.training.loop import TrainConfig, teacher_train_mode, train, train_step

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "metal_plate"


def _batch(images: torch.Tensor) -> dict:
    mask = torch.zeros(images.shape[0], 1, *images.shape[-2:])
    mask[..., 8:40, 8:40] = 1
    return {"image": images, "augmented": images * (1 - mask) + 0.8 * mask, "mask": mask}


def _bn_buffers(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}


@pytest.fixture(scope="module")
def plate_images(mpdd_root):
    samples = [s for s in list_samples(mpdd_root, "metal_plate", "train") if s.label == 0][:6]
    return [resize_image(load_image(s.path), 64) for s in samples]


def _tensor(images) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def test_frozen_teacher_batchnorm_keeps_the_expert_statistics_and_starts_on_the_expert(plate_images):
    """With teacher_bn="frozen" one training step changes the teacher's weights but not its BatchNorm
    statistics, and before any step its training-mode features equal the expert's; with "batch" (the
    released code) the statistics move and the features start far from the expert."""
    x = _tensor(plate_images[:4])
    for mode in ("frozen", "batch"):
        torch.manual_seed(0)
        model = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64)).train()
        teacher = teacher_train_mode(model.trained_teacher, mode)
        with torch.no_grad():
            start = [float((1 - torch.nn.functional.cosine_similarity(t, e, dim=1)).mean())
                     for t, e in zip(copy.deepcopy(teacher)(x), model.expert(x))]
        before = _bn_buffers(model.trained_teacher)
        t_opt = torch.optim.Adam(model.trained_teacher.parameters(), lr=1e-4, betas=(0.5, 0.999))
        s_opt = torch.optim.Adam(model.student_parameters(), lr=5e-3, betas=(0.5, 0.999))
        train_step(model, _batch(x), t_opt, s_opt, torch.device("cpu"), teacher_bn=mode)
        after = _bn_buffers(model.trained_teacher)
        moved = any(not torch.equal(before[k], after[k]) for k in before if "running_mean" in k)
        if mode == "frozen":
            assert max(start) < 1e-5 and not moved
        else:
            assert min(start) > 0.05 and moved


def test_health_check_reports_a_drifted_teacher_and_the_expert_becomes_the_default(mpdd_root):
    """The shipped demo checkpoint with its teacher reset to the expert, then drifted: the check sees it
    (distance on normal images up, synthetic-defect separation down) and picks the expert."""
    model, _ = load_checkpoint(SHIPPED)
    model.trained_teacher.load_state_dict(model.expert.state_dict())
    normal = [s for s in list_samples(mpdd_root, "metal_plate", "train") if s.label == 0]
    holdout = split_holdout(normal, 0.1, seed=111)[1]
    images = [resize_image(load_image(s.path), 256) for s in holdout]
    health_set = HealthSet.build(images, AnomalySynthesizer(foreground="otsu_inverse"), draws=2)
    assert len(health_set) == len(holdout) and health_set.augmented.shape[0] == 2 * len(holdout)
    assert health_set.clean.dtype == torch.float32 and float(health_set.clean.max()) <= 1.0
    fresh = check_health(model, health_set, torch.device("cpu"))
    assert fresh["agreement"] < 1e-6  # the teacher is the expert
    assert fresh["separation_teacher"] == pytest.approx(fresh["separation_expert"])
    assert fresh["image_separation_expert"] > 0.8  # synthetic defects score above clean normals
    # drift the way training-mode BatchNorm does: the teacher's statistics taken from synthetic-defect batches
    for module in model.trained_teacher.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 1.0
    with torch.no_grad():
        model.trained_teacher.train()(health_set.augmented[:4])
    model.eval()
    drifted = check_health(model, health_set, torch.device("cpu"))
    assert drifted["agreement"] > 0.2
    assert drifted["separation_teacher"] < drifted["separation_expert"]
    reference, reason = choose_reference(drifted)
    assert reference == "expert" and "lost to the frozen expert" in reason
    expert = drifted["separation_expert"]
    even = {**drifted, "faint_separation_teacher": drifted["faint_separation_expert"]}  # the faint check tied
    assert choose_reference({**even, "separation_teacher": expert + 0.01})[0] == "teacher"
    # synthetic defects are a proxy: a small loss (within REFERENCE_MARGIN) keeps the teacher
    assert choose_reference({**even, "separation_teacher": expert - REFERENCE_MARGIN / 2})[0] == "teacher"
    assert choose_reference({**even, "separation_teacher": expert - 2 * REFERENCE_MARGIN})[0] == "expert"
    # the faint anomalies: a teacher that ties the usual check but loses the faint one is not kept
    faint_expert = drifted["faint_separation_expert"]
    tied = {**drifted, "separation_teacher": expert}
    assert choose_reference({**tied, "faint_separation_teacher": faint_expert - FAINT_MARGIN / 2})[0] == "teacher"
    reference, reason = choose_reference({**tied, "faint_separation_teacher": faint_expert - 2 * FAINT_MARGIN})
    assert reference == "expert" and "faint" in reason
    # a check stored before the faint group existed is judged on the usual anomalies alone
    old = {k: v for k, v in tied.items() if not k.startswith("faint_")}
    assert choose_reference(old)[0] == "teacher"
    assert model.training is False  # the check restores the mode it found


def test_training_logs_health_and_stores_the_default_reference(tmp_path, mpdd_root):
    out = train(TrainConfig(data_root=str(mpdd_root), category="metal_plate", out=str(tmp_path / "run"),
                            image_size=64, batch_size=2, iterations=4, health_every=2, num_workers=0), progress=False)
    config = read_config(out)
    history = json.loads((out / "loss_history.json").read_text())
    assert [h["iteration"] for h in history["health"]] == [2, 4]
    info = CheckpointInfo.from_config(config)
    assert info.health["final"] == history["health"][-1]
    assert info.default_reference == choose_reference(info.health["final"])[0]
    assert config["model"]["default_reference"] == info.default_reference
    model, _ = load_checkpoint(out)
    assert model.config.default_reference == info.default_reference
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # forward without a reference uses the stored default
        assert torch.equal(model(x).maps.fused, model(x, reference=info.default_reference).maps.fused)
    # calibration ran with that reference: the held-out normals' scores sit below the threshold
    normal = [s for s in list_samples(mpdd_root, "metal_plate", "train") if s.label == 0]
    assert len(split_holdout(normal, 0.1, seed=111)[1]) == len(config["calibration"]["holdout_scores"])


@needs_tire
def test_check_anomalies_are_never_void_and_the_faint_group_is_fainter():
    """With the released mask rule and a tight foreground, half of tire's check anomalies were empty and
    counted as "missed". Every check anomaly now changes what it covers; the faint group changes it less."""
    pictures = training_pictures(TIRE, count=8)
    synthesizer = AnomalySynthesizer(foreground="grabcut", mask_rotation="zero_fill")  # empty draws allowed
    check = HealthSet.build(pictures, synthesizer, draws=3, size=128)
    assert check.augmented.shape == check.faint.shape == (24, 3, 128, 128)
    clean = check.clean.repeat_interleave(3, 0)
    change = {}
    for group in ("augmented", "faint"):
        inside, masks = check.anomaly_pixels(group)
        assert masks.reshape(len(masks), -1).any(1).all()  # no empty mask
        assert not (masks & ~inside).any()  # nothing in the padding
        diff = (getattr(check, group) - clean).abs().amax(1).numpy()
        per_anomaly = [float(d[m].mean()) for d, m in zip(diff, masks)]
        assert min(per_anomaly) > 1 / 255  # each one visible
        change[group] = float(np.median(per_anomaly))
    assert change["faint"] < 0.6 * change["augmented"]
    # the usual group does not depend on whether the faint one is made
    without = HealthSet.build(pictures, synthesizer, draws=3, size=128, with_faint=False)
    assert without.faint is None and torch.equal(without.augmented, check.augmented)


def test_the_reference_recipe_records_the_verdict_but_always_keeps_the_teacher():
    """The released code always scores against the trained teacher; under `--recipe reference` the check's
    verdict is recorded and the teacher kept, while `improved` lets the safeguard switch (recipe row 14)."""
    from rdexpert.training.health import reference_for
    from rdexpert.training.recipe import IMPROVED, RELEASED

    failed = {"separation_teacher": 0.70, "separation_expert": 0.95}
    assert reference_for(failed, IMPROVED.reference_switch)[:2] == ("expert", "expert")
    reference, verdict, reason = reference_for(failed, RELEASED.reference_switch)
    assert (reference, verdict) == ("teacher", "expert") and "kept the trained teacher" in reason
    held = {"separation_teacher": 0.95, "separation_expert": 0.95}
    assert reference_for(held, RELEASED.reference_switch)[:2] == ("teacher", "teacher")
