"""ModelConfig's defaults are the model `rdexpert train` builds; an old checkpoint still scores as it did."""

from __future__ import annotations

import json

import torch

from rdexpert.checkpoint.folder import load_checkpoint, save_checkpoint
from rdexpert.cli import build_parser, train_config_from_args
from rdexpert.model import ExpertTeacherStudent, ModelConfig
from rdexpert.model.ets import LEGACY_SCORING
from rdexpert.training.config import TrainConfig
from rdexpert.training.recipe import PRE_RECIPE_SET


def test_default_model_is_the_model_train_builds(tmp_path):
    args = build_parser().parse_args(["train", "--data-root", str(tmp_path), "--category", "x",
                                      "--out", str(tmp_path / "out")])
    built_by_train = train_config_from_args(args).model_config()
    assert ExpertTeacherStudent(ModelConfig(), pretrained=False).config == built_by_train
    assert TrainConfig(data_root=".", category="x", out="o").model_config() == ModelConfig()


def test_legacy_choices_are_those_of_checkpoints_before_recipes():
    assert LEGACY_SCORING == {"map_align_corners": False, "blur_border": "mirror", "precision": "bf16",
                              "input_fit": "squash"}
    assert all(PRE_RECIPE_SET[name] == value for name, value in LEGACY_SCORING.items())
    assert ModelConfig.from_dict({"variant": "rd"}) == ModelConfig(variant="rd", **LEGACY_SCORING)
    assert ModelConfig.from_dict(ModelConfig(input_fit="pad").to_dict()) == ModelConfig(input_fit="pad")


def test_an_old_checkpoint_scores_bit_for_bit_as_before(tmp_path):
    """A config.json written before the scoring fields existed is rebuilt with the choices it was scored with."""
    torch.manual_seed(0)
    old = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64, **LEGACY_SCORING), pretrained=False).eval()
    folder = save_checkpoint(old, tmp_path / "old", training={"pretrained": False})
    config = json.loads((folder / "config.json").read_text())
    for name in LEGACY_SCORING:  # as the checkpoint was written then
        del config["model"][name]
    (folder / "config.json").write_text(json.dumps(config))
    loaded, _ = load_checkpoint(folder)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = old(images).maps.fused, loaded(images).maps.fused
        today = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64), pretrained=False).eval()
        today.load_state_dict(old.state_dict())
        today_maps = today(images).maps.fused
    assert torch.equal(before, after)
    assert not torch.equal(before, today_maps)  # today's defaults would score it differently


def test_train_help_lists_every_train_config_field():
    from dataclasses import fields

    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    missing = [f.name for f in fields(TrainConfig) if "--" + f.name.replace("_", "-") not in help_text]
    assert not missing, f"TrainConfig fields without a train flag: {missing}"
