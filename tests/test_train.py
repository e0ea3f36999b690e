"""The two-step training loop: what each step updates, resume after interruption, atomic saves."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import CATEGORY, SIZE

from rdexpert.checkpoint.folder import load_checkpoint
from rdexpert.model import ExpertTeacherStudent, ModelConfig
from rdexpert.training.loop import TrainConfig, Trainer, train, train_step, warm_start


def batch(n=2, size=64):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, size, size)
    mask[..., 16:40, 20:44] = 1
    image = torch.rand(n, 3, size, size, generator=g)
    return {"image": image, "augmented": image * (1 - mask) + mask * 0.9, "mask": mask}


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def changed(before, module):
    after = module.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("variant", ["full", "rd"])
def test_train_step_updates_teacher_only_when_the_variant_trains_it(variant):
    torch.manual_seed(0)
    model = ExpertTeacherStudent(ModelConfig(variant=variant, image_size=64), pretrained=False).train()
    expert, student = snapshot(model.expert), snapshot(model.decoder)
    teacher_opt = None
    if model.trained_teacher is not None:
        teacher = snapshot(model.trained_teacher)
        teacher_opt = torch.optim.Adam(model.trained_teacher.parameters(), lr=1e-4, betas=(0.5, 0.999))
    student_opt = torch.optim.Adam(model.student_parameters(), lr=0.005, betas=(0.5, 0.999))
    losses = train_step(model, batch(), teacher_opt, student_opt, torch.device("cpu"))
    assert not changed(expert, model.expert)  # the expert never learns
    assert changed(student, model.decoder)
    if variant == "full":
        assert changed(teacher, model.trained_teacher)
        assert set(losses) == {"teacher", "student"}
    else:
        assert set(losses) == {"student"}


def tiny_config(tmp_path, mpdd_root, **overrides) -> TrainConfig:
    options = dict(data_root=str(mpdd_root), category="metal_plate", out=str(tmp_path / "run"), variant="full",
                   image_size=64, batch_size=2, iterations=5, save_every=2, pretrained=False, num_workers=0)
    options.update(overrides)
    return TrainConfig(**options)


def test_interrupted_run_resumes_where_it_stopped(tmp_path, mpdd_root):
    class Stop(Exception):
        pass

    def stop_at_three(iteration, losses):
        if iteration == 3:
            raise Stop

    config = tiny_config(tmp_path, mpdd_root)
    with pytest.raises(Stop):
        Trainer(config, progress=False, callback=stop_at_three).fit()
    state = json.loads((tmp_path / "run" / "resume" / "state.json").read_text())
    assert state["iteration"] == 3
    assert not (tmp_path / "run" / "model.safetensors").exists()
    seen = []
    Trainer(config, progress=False, callback=lambda i, _: seen.append(i)).fit()
    assert seen == [4, 5]
    history = json.loads((tmp_path / "run" / "loss_history.json").read_text())
    assert history["iteration"] == [1, 2, 3, 4, 5] and len(history["teacher"]) == 5
    model, saved = load_checkpoint(tmp_path / "run", pretrained_expert=False)
    assert saved["training"]["iterations"] == 5 and saved["calibration"]["holdout_scores"]
    assert not list((tmp_path / "run").glob(".*.tmp"))  # atomic writes left no temporaries


def test_resume_refuses_a_run_with_other_settings(tmp_path, mpdd_root):
    def stop(iteration, losses):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(tmp_path, mpdd_root), progress=False, callback=stop).fit()
    with pytest.raises(ValueError, match="variant"):
        Trainer(tiny_config(tmp_path, mpdd_root, variant="rd"), progress=False).fit()


def test_state_is_saved_by_time_as_well_as_by_count(tmp_path, mpdd_root):
    """save_seconds bounds what a SIGKILL can lose, even before the first save_every iterations."""
    state_path = tmp_path / "run" / "resume" / "state.json"
    saved_before = []

    def look(iteration, losses):  # runs before the save of this iteration: the previous one is on disk
        saved_before.append(json.loads(state_path.read_text())["iteration"] if state_path.is_file() else None)

    config = tiny_config(tmp_path, mpdd_root, save_every=1000, save_seconds=0.0, iterations=4)
    Trainer(config, progress=False, callback=look).fit()
    assert saved_before == [None, 1, 2, 3]


def test_sigterm_saves_the_state_and_the_run_resumes(tmp_path, mpdd_root):
    import os
    import signal

    from rdexpert.training.loop import Terminated

    def terminate_at_two(iteration, losses):
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    config = tiny_config(tmp_path, mpdd_root, save_every=1000)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        Trainer(config, progress=False, callback=terminate_at_two).fit()
    assert json.loads((tmp_path / "run" / "resume" / "state.json").read_text())["iteration"] == 2
    assert signal.getsignal(signal.SIGTERM) == previous  # the training's handler is gone again
    seen = []
    Trainer(config, progress=False, callback=lambda i, _: seen.append(i)).fit()
    assert seen == [3, 4, 5]


@pytest.mark.parametrize("bad, message", [
    (dict(image_size=33), "multiple of 32"), (dict(image_size=20000), r"\[32, 2048\]"), (dict(image_size=7), "got 7"),
    (dict(iterations=10**15), "iterations must be in"), (dict(batch_size=0), "batch size in"),
])
def test_numbers_are_bounded_before_anything_runs(bad, message):
    """Sizes that would allocate terabytes or fail deep in a forward are refused up front."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(data_root=".", category=None, out=".", **bad)


def test_a_tampered_checkpoint_config_is_refused_with_the_range(tiny_checkpoint, tmp_path):
    import shutil

    from rdexpert.checkpoint.folder import CheckpointError
    from rdexpert.checkpoint.io import read_json, write_json

    folder = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, folder)
    for key, value, message in (("image_size", 20000, r"\[32, 2048\]"), ("blur_sigma", 1e6, r"\[0, 64")):
        config = read_json(tiny_checkpoint / "config.json")
        config["model"][key] = value
        write_json(folder / "config.json", config)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(folder)


def test_warm_start_copies_the_trained_teacher_and_student(tiny_checkpoint, tiny_data, tmp_path):
    source, _ = load_checkpoint(tiny_checkpoint, pretrained_expert=False)
    model = ExpertTeacherStudent(ModelConfig(image_size=96), pretrained=False)  # another size: weights still fit
    before = model.decoder.stage1[0].body[0].weight.clone()
    copied = warm_start(model, str(tiny_checkpoint))
    assert copied["tensors"] == copied["of"] == len(model.trainable_state_dict())
    for name, value in source.trainable_state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert not torch.equal(before, model.decoder.stage1[0].body[0].weight)

    with pytest.raises(ValueError, match="same backbone"):
        warm_start(ExpertTeacherStudent(ModelConfig(backbone="resnet18"), pretrained=False), str(tiny_checkpoint))

    # the trainer records it, and a 1-iteration run starts from (and stays near) the source
    out = train(TrainConfig(data_root=str(tiny_data), category=CATEGORY, out=str(tmp_path / "warm"), iterations=1,
                            image_size=SIZE, batch_size=2, device="cpu", foreground="none",
                            init_from=str(tiny_checkpoint)), progress=False)
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["init_from"] == str(tiny_checkpoint)
    assert training["warm_start"]["tensors"] == copied["of"]
