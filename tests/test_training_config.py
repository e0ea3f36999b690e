"""rdexpert.training.config: TrainConfig presets, defaults filled from the recipe, bounds, and its dict round trip."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest
from helpers import rgb_array, save_image

from rdexpert.training.config import MAX_BATCH_SIZE, MAX_ITERATIONS, PRESETS, RESUMABLE_CHANGES, TrainConfig
from rdexpert.training.recipe import CHOICES, IMPROVED, PRE_RECIPE_SET, RELEASED

RUN = dict(data_root=".", category="metal_plate", out=".")


# -- presets and the defaults they fill -----------------------------------------------------------
def test_presets_and_bad_settings():
    paper = TrainConfig(data_root=".", category=None, out=".", preset="paper")
    assert (paper.backbone, paper.image_size, paper.batch_size, paper.iterations) == ("wide_resnet50_2.tv_in1k", 256, 16, 5000)
    assert TrainConfig(data_root=".", category=None, out=".", iterations=7).iterations == 7
    assert set(PRESETS) == {"paper", "cpu", "quick"}
    with pytest.raises(ValueError, match="preset"):
        TrainConfig(data_root=".", category=None, out=".", preset="huge")
    with pytest.raises(ValueError, match="variant"):
        TrainConfig(data_root=".", category=None, out=".", variant="nope").model_config()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_fills_what_was_not_given_and_keeps_what_was(preset):
    run = TrainConfig(**RUN, preset=preset)
    expected = dict(PRESETS[preset])
    if expected["backbone"] == "wide_resnet50_2":
        expected["backbone"] = "wide_resnet50_2.tv_in1k"  # the improved recipe keeps torchvision's weights too
    assert {key: getattr(run, key) for key in expected} == expected
    given = TrainConfig(**RUN, preset=preset, backbone="resnet18", image_size=96, batch_size=3, iterations=40)
    assert (given.backbone, given.image_size, given.batch_size, given.iterations) == ("resnet18", 96, 3, 40)


def test_health_checks_and_holdout_default_from_the_run():
    assert TrainConfig(**RUN, iterations=80).health_every == 10  # iterations // 8
    assert TrainConfig(**RUN, iterations=3).health_every == 1  # at least every iteration
    assert TrainConfig(**RUN, iterations=80, health_every=0).health_every == 0  # 0: only at the end
    assert TrainConfig(**RUN).holdout_fraction == IMPROVED.holdout_fraction == 0.1
    assert TrainConfig(**RUN, recipe="released").holdout_fraction == RELEASED.holdout_fraction == 0.0
    assert TrainConfig(**RUN, recipe_set={"holdout_fraction": 0.0}).holdout_fraction == 0.0
    assert TrainConfig(**RUN, holdout_fraction=0.25).holdout_fraction == 0.25


def test_the_model_config_carries_the_run_and_its_recipe():
    model = TrainConfig(**RUN, variant="rd", image_size=96, recipe_set={"input_fit": "pad", "precision": "fp32"}).model_config()
    assert (model.backbone, model.variant, model.image_size) == ("tf_efficientnet_lite0", "rd", 96)
    assert (model.input_fit, model.precision) == ("pad", "fp32")
    assert model.map_align_corners == IMPROVED.map_align_corners and model.blur_border == IMPROVED.blur_border


def test_long_categories_train_twice_the_preset_in_both_recipes():
    """The released code trains cable, transistor and every VisA category for 10000 iterations; the
    doubling holds whether iterations are counted in epochs (reference) or exactly (improved)."""
    for recipe in ("released", "improved"):
        for category, factor in (("cable", 2), ("transistor", 2), ("pcb1", 2), ("macaroni2", 2), ("bottle", 1),
                                 ("tire", 1)):
            run = TrainConfig(data_root=".", category=category, out=".", preset="paper", recipe=recipe)
            assert run.iterations == factor * 5000, (recipe, category)
    assert TrainConfig(data_root=".", category="cable", out=".", preset="paper", iterations=123).iterations == 123


# -- bounds checked before any work ---------------------------------------------------------------
@pytest.mark.parametrize(("settings", "message"), [
    (dict(iterations=0), r"iterations must be in \[1, "),
    (dict(iterations=MAX_ITERATIONS + 1), "iterations must be in"),
    (dict(batch_size=0), r"batch size in \[1, "),
    (dict(batch_size=MAX_BATCH_SIZE + 1), "batch size in"),
    (dict(image_size=65), "image_size must be a multiple of 32"),
    (dict(variant="nope"), "unknown variant 'nope'"),
    (dict(teacher_bn="sometimes"), "unknown teacher_bn 'sometimes'"),
    (dict(health_every=-1), "health_every must be >= 0"),
    (dict(recipe="nope"), "unknown recipe 'nope'"),
    (dict(recipe_set={"nope": 1}), "unknown recipe choice"),
    (dict(preset="huge"), "unknown preset 'huge'"),
    (dict(save_every=0), "save_every must be >= 1"),
    (dict(holdout_fraction=2.0), r"holdout_fraction must be in \[0, 1\)"),
    (dict(foreground="everywhere"), "foreground 'everywhere' is not one of"),
    (dict(health_draws=0), "health_draws must be >= 1"),
    (dict(num_workers=-1), "num_workers >= 0"),
    (dict(student_lr=-0.1), "learning rates must be > 0"),
    (dict(betas=(0.5, 0.9, 0.99)), "betas must be two numbers"),
])
def test_bad_settings_are_refused_when_the_config_is_made(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**RUN, **settings)


def test_data_root_category_and_out_are_required():
    with pytest.raises(TypeError, match="category"):
        TrainConfig(data_root=".", out=".")


def test_every_field_has_a_help_text_and_a_default_among_its_choices():
    """What the ``rdexpert train`` flags are built from (rdexpert.cli)."""
    for f in fields(TrainConfig):
        assert f.metadata.get("help"), f.name
        if f.metadata.get("choices") and f.default is not None and not callable(f.default):
            assert f.default in f.metadata["choices"], f.name
    assert RESUMABLE_CHANGES <= {f.name for f in fields(TrainConfig)}


# -- to_dict / from_dict --------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [dict(), dict(preset="paper", category="cable"), dict(preset="quick", recipe="released"),
                                      dict(recipe_set={"input_fit": "pad"}, betas=(0.9, 0.99), textures="/dtd")])
def test_a_config_survives_a_json_round_trip(settings):
    run = TrainConfig(**{**RUN, **settings})
    stored = json.loads(json.dumps(run.to_dict()))  # as config.json keeps it: the betas become a list
    again = TrainConfig.from_dict(stored)
    assert again == run and isinstance(again.betas, tuple)
    assert again.iterations == run.iterations  # a long category is not doubled a second time


def test_unknown_keys_of_another_version_are_ignored():
    stored = {**TrainConfig(**RUN).to_dict(), "field_of_a_newer_version": 3, "foreground_method": "grabcut"}
    assert TrainConfig.from_dict(stored) == TrainConfig(**RUN)


def test_a_config_from_before_recipes_reads_back_with_the_choices_made_then():
    """Re-calibrating an old checkpoint must make the synthetic anomalies it was trained with."""
    old = TrainConfig.from_dict({"data_root": ".", "category": "metal_plate", "out": ".", "textures": None})
    assert old.resolved_recipe().to_dict() == PRE_RECIPE_SET
    # every second choice of each row, except that rdexpert squashed images then, as the released code does
    assert PRE_RECIPE_SET == {name: values[1] for name, values in CHOICES.items()} | {"input_fit": "squash"}
    synthesizer = old.synthesizer("otsu_inverse")
    assert synthesizer.augment_textures and synthesizer.mask_rotation == "reflect"
    new = TrainConfig.from_dict(TrainConfig(data_root=".", category="metal_plate", out=".").to_dict())
    assert new.resolved_recipe() == IMPROVED


def test_a_checkpoint_reads_back_with_the_choices_it_trained_with_even_after_the_recipe_changed():
    """A config.json records every recipe choice; re-calibrating reads those, not today's named recipe."""
    assert IMPROVED.mask_rotation == "reflect" and RELEASED.mask_rotation == "zero_fill"
    stored = {"data_root": ".", "category": "tire", "out": ".", "recipe": "improved",
              "recipe_choices": {**IMPROVED.to_dict(), "mask_rotation": "zero_fill"}}
    run = TrainConfig.from_dict(stored)
    assert run.resolved_recipe() == replace(IMPROVED, mask_rotation="zero_fill")
    assert run.synthesizer("grabcut").mask_rotation == "zero_fill"


def test_the_synthesizer_follows_the_run_unless_given_other_textures(tmp_path):
    for folder in ("run", "other"):
        save_image(tmp_path / folder / "texture.png", rgb_array())
    run = TrainConfig(**RUN, textures=str(tmp_path / "run"), recipe="released")
    synthesizer = run.synthesizer("otsu_inverse")
    assert synthesizer.foreground == "otsu_inverse" and synthesizer.textures.folder == tmp_path / "run"
    assert (synthesizer.augment_textures, synthesizer.mask_rotation) == (RELEASED.texture_augmentation,
                                                                           RELEASED.mask_rotation)
    assert run.synthesizer("none", textures=str(tmp_path / "other")).textures.folder == tmp_path / "other"
    assert TrainConfig(**RUN).synthesizer("none").textures.folder is None  # procedural textures
