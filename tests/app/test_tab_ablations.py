"""The Ablations tab's handlers (rdexpert.app.tab_ablations), without a browser: the image used, the switches'
panels and gates, the trained variants compared like with like.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from helpers import MPDD  # noqa: E402

from rdexpert.app.registry import Registry  # noqa: E402

from .support import EXAMPLES, GRADIO_WARNINGS, ROOT  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_ablations_use_the_selected_inspect_image(parts):
    from rdexpert.app.inspection import InspectItem, InspectState
    from rdexpert.app.tab_ablations import ablation_source, custom_combination, walkthrough

    image, heat = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32)
    items = [InspectItem("a.png", "/x/a.png", image, heat, [], 0.1, 0.2), InspectItem("b", None, image, heat, [], 0, 0)]
    state = InspectState("k", items, seconds=1.0, device="cpu", raw_threshold=None, load_seconds=None)
    assert ablation_source(state, None) == "/x/a.png" and ablation_source(state, "ex.png") == "ex.png"
    assert ablation_source(state.select(5), None) is image  # clamped to the last item, which has no file
    assert ablation_source(None, None) is None
    tab = parts.ablations
    out = walkthrough(tab, Registry(), "k", None, None)
    # message, 4 panels, 4 texts, gates, custom, variants (2 each), what is shown
    assert "Pick an image" in out[tab.message] and len(out) == 16 and out[tab.shown] is None
    out = custom_combination(tab, Registry(), "k", None, None, "teacher", "open")
    assert out[tab.custom_text] == "Pick an image first."
    assert out[tab.custom].value is None and out[tab.custom].label.endswith("reference teacher · GII open")


def test_ablations_show_the_gii_gate_and_each_switchs_difference(app_registry, parts):
    """The default setting's gate s per gated scale, explained; the other panels state |map - default|."""
    from rdexpert.app import views
    from rdexpert.app.tab_ablations import walkthrough

    example = str(EXAMPLES / "defect_train_00066.png")
    gated = next(k for k in app_registry.choices() if app_registry.get(k).variant in ("full", "rd_gii"))
    tab = parts.ablations
    out = walkthrough(tab, app_registry, gated, None, example)
    message, texts = out[tab.message], [out[text] for text in tab.texts]
    gates, gates_text = out[tab.gates], out[tab.gates_text]
    assert "defect_train_00066.png" in message
    # the gate maps lie over the picture the network saw, with a colour bar below; their captions are in the text
    assert len(gates) == 2 and all(caption is None for _, caption in gates)
    assert "1. s at 1/16 (stride 16), mean" in gates_text and "2. s at 1/8 (stride 8), mean" in gates_text
    assert all(picture.dtype == np.uint8 and picture.shape[2] == 3 for picture, _ in gates)
    assert all(picture.shape[0] > picture.shape[1] for picture, _ in gates)  # the colour bar under the square map
    assert "per-pixel cosine similarity between the student's decoded feature and the teacher's" in gates_text
    assert all("What to look at" in text for text in texts)
    assert "Difference from the default map" not in texts[0]
    assert all("Difference from the default map" in text and "mean **" in text for text in texts[1:])
    assert views.LOOK_AT[("teacher", "closed")] in texts[3]

    plain_rd = next(k for k in app_registry.choices() if app_registry.get(k).variant == "rd")
    out = walkthrough(tab, app_registry, plain_rd, None, example)
    assert out[tab.gates] is None and "no GII gate" in out[tab.gates_text] and "no skips" in out[tab.gates_text]


def test_every_panel_shows_the_setting_its_controls_show(app_registry, parts):
    """Item 1: with reference expert and gate open chosen, a new example (or image, or checkpoint) redraws the
    chosen-combination panel for expert · open, never for the default; every panel is captioned with its setting."""
    from rdexpert.app.examples import ExampleSet
    from rdexpert.app.tab_ablations import CUSTOM_LABEL, panel_label, walkthrough, walkthrough_checkpoint

    example = str(EXAMPLES / "defect_train_00066.png")
    gated = next(k for k in app_registry.choices() if app_registry.get(k).variant in ("full", "rd_gii"))
    tab = parts.ablations
    out = walkthrough(tab, app_registry, gated, None, example, "expert", "open")
    assert out[tab.custom].label == CUSTOM_LABEL + panel_label("expert", "open")
    assert out[tab.custom_text].startswith("**expert · open** — calibrated score")
    assert "Difference from the default map" in out[tab.custom_text]
    for image, text in zip(tab.images, tab.texts):  # each walkthrough panel: caption and text name one setting
        reference, gate = out[image].label.removeprefix("reference ").split(" · GII ")
        assert out[text].startswith(f"**{reference} · {gate}** — ")
    assert out[tab.shown] == gated
    # a walkthrough setting chosen: the same picture and text as its walkthrough panel
    out = walkthrough(tab, app_registry, gated, None, example, "teacher", "closed")
    assert out[tab.custom_text] == out[tab.texts[3]] and out[tab.custom].label.endswith("teacher · GII closed")

    class Sessions:  # the shared registry for every request
        def registry_for(self, request):
            return app_registry

    plain_rd = next(k for k in app_registry.choices() if app_registry.get(k).variant == "rd")
    examples = ExampleSet.scan(ROOT / "assets" / "examples")
    none_shown = walkthrough_checkpoint(tab, Sessions(), examples, plain_rd, None, example, None, "expert", "open")
    assert none_shown == {tab.shown: None}  # nothing redrawn
    out = walkthrough_checkpoint(tab, Sessions(), examples, plain_rd, None, example, gated, "expert", "open")
    assert plain_rd in out[tab.message] and out[tab.shown] == plain_rd
    assert out[tab.custom].label.endswith("reference expert · GII open")


def test_panel_texts_follow_the_variant(app_registry, parts):
    """Item 5: plain RD (the teacher is the frozen expert, no skips) is never said to compare with a trained
    teacher or to inject detail through GII; its switches are said to change nothing."""
    from rdexpert.app.tab_ablations import walkthrough

    example = str(EXAMPLES / "defect_train_00066.png")
    plain_rd = next(k for k in app_registry.choices() if app_registry.get(k).variant == "rd")
    tab = parts.ablations
    out = walkthrough(tab, app_registry, plain_rd, None, example)
    default = out[tab.texts[0]]
    assert "This checkpoint's default" in default and "frozen expert itself" in default and "no skips" in default
    assert "GII injects" not in default and "trained teacher" not in default
    assert all("nothing should change" in out[text] for text in tab.texts[1:])


def test_shipped_variants_are_compared_like_with_like():
    """The shipped 128-px ablation checkpoints (one budget) are what the Ablations tab compares, not the
    256-px demo `full` beside them; the text names the shared budget."""
    from rdexpert.app.tab_ablations import variant_comparison

    shipped = sorted(p for p in (ROOT / "checkpoints").glob("metal_plate_*_128px") if (p / "config.json").is_file())
    if len(shipped) < 4:
        pytest.skip("the shipped ablation checkpoints are not here")
    registry = Registry(device="cpu")
    registry.scan(ROOT / "checkpoints", source="shipped")
    found = registry.variants("metal_plate")
    assert list(found) == ["rd", "rd_expert", "rd_gii", "full", "full_plain"]  # every shipped, selectable variant
    assert {e.info.training["image_size"] for e in found.values()} == {128}
    demo = next(e for e in registry.entries.values()
                if e.info.training.get("image_size") == 256 and e.category == "metal_plate")
    image = np.asarray(Image.open(sorted((MPDD / "metal_plate" / "test" / "defect").glob("*.png"))[0]).convert("RGB"))
    gallery, text = variant_comparison(registry, demo, image)
    assert len(gallery) == 5 and "same budget" in text and "128 px, 200 iterations" in text
    assert "`full_plain` (trained teacher + expert targets, augmented student, plain (ungated) skips)" in text
    for weights in (d / "model.safetensors" for d in shipped):  # small: float16 where the zoo kept it so
        limit = 20 if "F32" in _dtypes(weights) else 10
        assert weights.stat().st_size <= limit * 2**20, (weights, _dtypes(weights))


def _dtypes(path) -> set[str]:
    """The tensor dtypes in a safetensors file's header ("F16", "F32")."""
    import json
    import struct

    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}
