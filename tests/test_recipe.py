"""The ``reference`` recipe reproduces the released code's behaviour, each with a hand-computed expectation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from rdexpert.model import ExpertTeacherStudent, ModelConfig
from rdexpert.model.anomaly_map import compute_anomaly_maps, gaussian_blur
from rdexpert.synthesis import AnomalySynthesizer, foreground_method_for
from rdexpert.synthesis.perlin import perlin_mask
from rdexpert.training.loop import TrainConfig, initialise_student, scheduled_iterations, train_step
from rdexpert.training.losses import chained_masks, resize_mask
from rdexpert.training.recipe import CHOICES, IMPROVED, RELEASED, get_recipe, parse_overrides


def test_reference_is_the_first_choice_of_every_row_and_improved_names_its_deviations():
    assert RELEASED.deviations() == []
    assert set(IMPROVED.deviations()) <= set(CHOICES)
    assert get_recipe("released", {"mask_resize": "direct"}).deviations() == ["mask_resize"]
    assert parse_overrides(["student_bn_passes=1", "map_align_corners=False"]) == {
        "student_bn_passes": 1, "map_align_corners": False}
    with pytest.raises(ValueError, match="mask_resize"):
        parse_overrides(["mask_resize=sideways"])
    with pytest.raises(ValueError, match="unknown recipe choice"):
        get_recipe("released", {"colour": "red"})


def test_chained_mask_resize_on_a_small_mask():
    # one row of 16 px with ones at columns 4 and 6. 16 -> 8 with align_corners samples x = j * 15/7:
    # j=2 at 4.29 gives 0.71 (cols 4|5) and j=3 at 6.43 gives 0.57 (cols 6|7), both >= 0.5.
    # 8 -> 4 samples x = k * 7/3 of that: k=1 at 2.33 lies between two ones. Straight 16 -> 4 samples
    # x = 5k and hits column 5 (a zero); rdexpert's direct resize (align_corners=False, > 0.5) gets 0.5.
    mask = torch.zeros(1, 1, 4, 16)
    mask[..., [4, 6]] = 1
    at8, at4 = chained_masks(mask, [(4, 8), (4, 4)])
    assert at8[0, 0].tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert at4[0, 0].tolist() == [0, 1, 0, 0]
    assert resize_mask(mask, (4, 8))[0, 0].tolist() == [0] * 8
    # the order of the requested sizes does not change the chain (always largest first)
    assert torch.equal(chained_masks(mask, [(4, 4), (4, 8)])[0], at4)


@pytest.mark.parametrize("border, scipy_mode", [("reflect", "reflect"), ("mirror", "mirror")])
def test_blur_border_equals_scipy_gaussian_filter(border, scipy_mode):
    rng = np.random.default_rng(0)
    image = rng.random((40, 36)).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(image)[None, None], 4.0, border)[0, 0].numpy()
    expected = gaussian_filter(image.astype(np.float64), sigma=4, mode=scipy_mode)  # scipy's default is reflect
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    if border == "reflect":
        np.testing.assert_allclose(ours, gaussian_filter(image.astype(np.float64), sigma=4), atol=1e-5)


def test_map_upsampling_with_align_corners_keeps_the_corners():
    # a 2x2 distance map [[0, 1], [1, 0]] upsampled to 3x3: with align_corners the corners are the
    # samples themselves and the centre is their mean 0.5. To 4x4, the first row samples x = 0, 1/3, 2/3, 1
    # with align_corners, and x = -1/4 (clamped to 0), 1/4, 3/4, 5/4 (clamped to 1) without
    student = [torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [1.0, 0.0]]]]).permute(1, 0, 2, 3)]
    reference = [torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]]).permute(1, 0, 2, 3)]
    # per pixel: cos((1,0),(1,0)) = 1 -> distance 0; cos((0,1),(1,0)) = 0 -> distance 1
    maps = compute_anomaly_maps(student, reference, (3, 3), sigma=0, align_corners=True)
    assert maps.fused[0, 0].tolist() == [[0.0, 0.5, 1.0], [0.5, 0.5, 0.5], [1.0, 0.5, 0.0]]
    rows = [compute_anomaly_maps(student, reference, (4, 4), sigma=0, align_corners=a).fused[0, 0, 0] for a in (True, False)]
    torch.testing.assert_close(rows[0], torch.tensor([0, 1 / 3, 2 / 3, 1]))
    torch.testing.assert_close(rows[1], torch.tensor([0, 0.25, 0.75, 1]))


def _bn_inputs(module: torch.nn.BatchNorm2d) -> list[torch.Tensor]:
    seen = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("passes", [2, 1])
def test_student_batchnorm_statistics_follow_the_passes(passes):
    torch.manual_seed(0)
    model = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64), pretrained=False).train()
    bn = next(m for m in model.ocbe.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inputs = _bn_inputs(bn)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 64, 64, generator=g)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 8:40, 8:40] = 1
    batch = {"image": image, "augmented": image * (1 - mask) + 0.9 * mask, "mask": mask}
    opt_t = torch.optim.Adam(model.trained_teacher.parameters(), lr=1e-4)
    opt_s = torch.optim.Adam(model.student_parameters(), lr=5e-3)
    train_step(model, batch, opt_t, opt_s, torch.device("cpu"), recipe=get_recipe("released", {"student_bn_passes": passes}))
    assert len(inputs) == passes
    means = [x.mean((0, 2, 3)) for x in inputs]
    # running_mean starts at 0 with momentum 0.1: one update gives 0.1 m, two sequential ones 0.09 m1 + 0.1 m2
    expected = 0.1 * means[0] if passes == 1 else 0.9 * 0.1 * means[0] + 0.1 * means[1]
    torch.testing.assert_close(bn.running_mean, expected, atol=1e-6, rtol=1e-5)


def test_xavier_normal_init_of_the_student_convolutions():
    torch.manual_seed(0)
    model = ExpertTeacherStudent(ModelConfig(variant="full", image_size=64), pretrained=False)
    initialise_student(model, "xavier_normal")
    conv = next(m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() > 20000)
    fan_out, fan_in = conv.weight.shape[0] * conv.weight[0, 0].numel(), conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (fan_in + fan_out)), rel=0.05)


def test_epoch_schedule_rounds_up_to_whole_epochs_with_the_last_partial_batch():
    # 100 images in batches of 16: 7 batches per epoch (the last of 4); 5000 iterations -> 715 epochs = 5005
    assert scheduled_iterations(5000, 100, 16, "epochs") == 5005
    assert scheduled_iterations(5000, 100, 16, "iterations") == 5000
    assert scheduled_iterations(3, 2, 16, "epochs") == 3  # fewer images than a batch: one batch per epoch


def test_reference_training_config_follows_the_released_code():
    paper = TrainConfig(data_root=".", category="cable", out=".", preset="paper", recipe="released")
    assert (paper.iterations, paper.backbone, paper.holdout_fraction) == (10000, "wide_resnet50_2.tv_in1k", 0.0)
    model = paper.model_config()
    assert (model.map_align_corners, model.blur_border, model.precision) == (True, "reflect", "fp32")
    screw = TrainConfig(data_root=".", category="screw", out=".", preset="paper", recipe="released")
    assert screw.iterations == 5000
    assert TrainConfig(data_root=".", category="cable", out=".", iterations=7, recipe="released").iterations == 7


def test_released_foreground_table():
    assert foreground_method_for("bottle", table="released") == "grabcut_released"
    assert foreground_method_for("screw", table="released") == "otsu_inverse_released"
    assert foreground_method_for("transistor", table="released") == "none"
    assert foreground_method_for("metal_plate", table="released") == "otsu_inverse"  # not MVTec AD: rdexpert's table
    # inverse Otsu of the released code: a dark bar on a light background, no cleaning
    image = np.full((32, 32, 3), 0.8, np.float32)
    image[10:12, 4:28] = 0.1
    fg = AnomalySynthesizer(foreground="otsu_inverse_released").foreground_mask(image)
    assert fg.sum() == 2 * 24 and fg[10:12, 4:28].all()


def test_zero_fill_rotation_allows_empty_masks_and_leaves_corners_clean():
    rng_zero, rng_reflect = np.random.default_rng(0), np.random.default_rng(0)
    zero = [perlin_mask((64, 64), rng_zero, rotation="zero_fill") for _ in range(300)]
    reflect = [perlin_mask((64, 64), rng_reflect, rotation="reflect") for _ in range(300)]
    assert sum(not m.any() for m in zero) > 0
    assert all(m.any() for m in reflect)
    # a rotation by more than a few degrees moves a corner pixel outside the source: zero, so no defect there
    corners = np.mean([m[0, 0] + m[0, -1] + m[-1, 0] + m[-1, -1] for m in zero]) / 4
    assert corners < np.mean([m.mean() for m in zero])


def test_input_fit_row_both_recipes_squash_pad_is_a_choice_and_old_checkpoints_squash():
    """Row 13: the released code resizes to a square, and so does the improved
    recipe (padding measured worse on tire); `pad` stays a choice. A config.json model section written before the
    row existed has no ``input_fit`` and must score as it did (squash)."""
    assert CHOICES["input_fit"] == ("squash", "pad") and RELEASED.input_fit == IMPROVED.input_fit == "squash"
    run = dict(data_root=".", category="metal_plate", out=".")
    assert TrainConfig(**run, recipe="released").model_config().input_fit == "squash"
    assert TrainConfig(**run).model_config().input_fit == "squash"
    assert TrainConfig(**run, recipe_set={"input_fit": "pad"}).model_config().input_fit == "pad"
    old_section = {"backbone": "tf_efficientnet_lite0", "variant": "full", "image_size": 256}
    assert ModelConfig(**old_section).input_fit == "squash"
    assert ModelConfig(**ModelConfig(input_fit="pad").to_dict()).input_fit == "pad"  # stored and read back
    with pytest.raises(ValueError, match="input_fit='crop'"):
        ModelConfig(input_fit="crop")


def test_reference_recipe_uses_the_released_visa_foreground():
    """The released VisA script masks every category with GrabCut (11 iterations, full size)."""
    from rdexpert.synthesis import foreground_method_for
    from rdexpert.synthesis.foreground import VISA_CATEGORIES

    for category in VISA_CATEGORIES:
        assert foreground_method_for(category, table=RELEASED.foreground_table) == "grabcut_released"
    assert IMPROVED.foreground_table == "released"  # improved follows the released code on row 10 too
    assert foreground_method_for("pcb1", table="rdexpert") == "none"  # rdexpert's own table, --recipe-set
    assert foreground_method_for("screw", table=RELEASED.foreground_table) == "otsu_inverse_released"


def test_the_released_recipe_is_still_read_by_its_old_name():
    """`reference` meant three things; the released code's recipe is now `released`, and old names still load."""
    from rdexpert.training.recipe import RELEASED

    assert get_recipe("reference") == get_recipe("released") == RELEASED
    assert TrainConfig(data_root=".", category="x", out=".", recipe="reference").recipe == "released"
    assert TrainConfig.from_dict({"data_root": ".", "category": "x", "out": ".", "recipe": "reference"}).recipe == "released"
