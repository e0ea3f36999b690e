"""The Ablations tab's handlers (rdexpert.app.tab_ablations), without a browser: the image used, the switches'
panels and gates, the trained variants compared like with like.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry  # noqa: E402

from helpers import MPDD  # noqa: E402

from .support import GRADIO_WARNINGS, ROOT  # noqa: E402

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
    # message, 4 panels, 4 texts, gates, custom, variants (2 each)
    assert "Pick an image" in out[tab.message] and len(out) == 15
    assert custom_combination(tab, Registry(), "k", None, None, "teacher", "open") == {
        tab.custom: None, tab.custom_text: "Pick an image first."}


def test_ablations_show_the_gii_gate_and_each_switchs_difference(app_registry, parts):
    """The default setting's gate s per gated scale, explained; the other panels state |map - default|."""
    from rdexpert.app import views
    from rdexpert.app.tab_ablations import walkthrough

    example = str(ROOT / "assets" / "defect_train_00066.png")
    gated = next(k for k in app_registry.choices() if app_registry.get(k).variant in ("full", "rd_gii"))
    tab = parts.ablations
    out = walkthrough(tab, app_registry, gated, None, example)
    message, texts = out[tab.message], [out[text] for text in tab.texts]
    gates, gates_text = out[tab.gates], out[tab.gates_text]
    assert "defect_train_00066.png" in message
    assert len(gates) == 2 and [caption.split(",")[0] for _, caption in gates] == ["s at 1/16 (stride 16)",
                                                                                   "s at 1/8 (stride 8)"]
    assert all(picture.dtype == np.uint8 and picture.shape[2] == 3 for picture, _ in gates)
    assert "per-pixel cosine similarity between the student's decoded feature and the teacher's" in gates_text
    assert all("What to look at" in text for text in texts)
    assert "Difference from the default map" not in texts[0]
    assert all("Difference from the default map" in text and "mean **" in text for text in texts[1:])
    assert views.LOOK_AT[("teacher", "closed")] in texts[3]

    plain_rd = next(k for k in app_registry.choices() if app_registry.get(k).variant == "rd")
    out = walkthrough(tab, app_registry, plain_rd, None, example)
    assert out[tab.gates] is None and "no GII gate" in out[tab.gates_text] and "no skips" in out[tab.gates_text]


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
    assert list(found) == ["rd", "rd_expert", "rd_gii", "full"]
    assert {e.info.training["image_size"] for e in found.values()} == {128}
    demo = next(e for e in registry.entries.values() if e.info.training.get("image_size") == 256)
    image = np.asarray(Image.open(sorted((MPDD / "metal_plate" / "test" / "defect").glob("*.png"))[0]).convert("RGB"))
    gallery, text = variant_comparison(registry, demo, image)
    assert len(gallery) == 4 and "same budget" in text and "128 px, 200 iterations" in text
    assert all(p.stat().st_size <= 10 * 2**20 for d in shipped for p in [d / "model.safetensors"])
