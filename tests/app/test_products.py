"""Several products in one app (issue 23): the examples follow the selected checkpoint's product, and the
Ablations text and table say what each product's stored variant metrics show, from those numbers alone.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gradio")

from rdexpert.app.examples import ExampleSet  # noqa: E402
from rdexpert.app.registry import Registry  # noqa: E402
from rdexpert.app.variant_findings import findings, product_rows, product_table, stored_variants_text  # noqa: E402

from .support import GRADIO_WARNINGS, ROOT  # noqa: E402

pytestmark = GRADIO_WARNINGS
SHIPPED = ExampleSet.scan(ROOT / "assets" / "examples")


def test_every_shipped_product_has_labelled_examples_with_masks():
    """Each product folder: normal and defective test images, every defective one with its mask, small files,
    and a license note naming the product."""
    assert len(SHIPPED.products) >= 1
    notes = (ROOT / "assets" / "LICENSE.md").read_text()
    total = 0
    for product, examples in SHIPPED.products.items():
        truths = [e.truth for e in examples]
        assert "normal" in truths and "defective" in truths and truths == sorted(truths, reverse=True), product
        assert all((e.mask is not None) == (e.truth == "defective") for e in examples), product
        assert all(e.product == product and not e.path.endswith("_mask.png") for e in examples)
        assert f"`{product}`" in notes, product
        total += sum(p.stat().st_size for p in (ROOT / "assets" / "examples" / product).iterdir())
    assert total < 5 * 2**20


def test_examples_follow_the_product_and_an_unknown_product_gets_all(tmp_path):
    for product, names in {"cap": ["good_1.png", "defect_x_1.png", "defect_x_1_mask.png"],
                           "bolt": ["good_a.jpg", "defect_b.png", "notes.txt"]}.items():
        (tmp_path / product).mkdir()
        for name in names:
            (tmp_path / product / name).write_bytes(b"")
    examples = ExampleSet.scan(tmp_path)
    assert list(examples.products) == ["bolt", "cap"]
    assert examples.gallery("cap") == [(str(tmp_path / "cap" / "good_1.png"), "normal: 1"),
                                       (str(tmp_path / "cap" / "defect_x_1.png"), "defective: x_1")]
    assert examples.for_category("cap")[1].mask == str(tmp_path / "cap" / "defect_x_1_mask.png")
    assert examples.label("cap") == "cap test images"
    for unknown in (None, "tire"):  # a fine-tune, another product: every product's, captioned with it
        assert [e.path for e in examples.for_category(unknown)] == [e.path for e in examples.all]
        assert [c for _, c in examples.gallery(unknown)] == ["bolt · normal: a", "bolt · defective: b",
                                                             "cap · normal: 1", "cap · defective: x_1"]
        assert "bolt, cap" in examples.label(unknown)
    assert ExampleSet.scan(tmp_path / "absent").gallery("cap") == []


def _metrics(image, pixel, pro):
    return {"image_auroc": image / 100, "pixel_auroc": pixel / 100, "aupro": pro / 100}


def test_findings_are_computed_from_the_numbers():
    """Each component is judged by two variants that differ in it; gains and losses under a point are noise;
    a product where every variant is near chance says so."""
    rows = {"rd": _metrics(54.5, 91.3, 71.1), "rd_expert": _metrics(56.6, 91.4, 68.7),
            "rd_gii": _metrics(54.9, 91.5, 71.0), "full": _metrics(50.2, 92.9, 74.1),
            "full_plain": _metrics(54.6, 93.6, 76.0)}
    text = findings("widget", rows)
    assert "on **widget**" in text
    lines = {line.split("`")[1] + "/" + line.split("`")[3]: line for line in text.splitlines() if "` vs `" in line}
    assert set(lines) == {"rd_expert/rd", "rd_gii/rd", "full/rd", "full/full_plain"}
    assert "is mixed: higher I-AUROC, lower AUPRO@0.3: I-AUROC 56.6 vs 54.5" in lines["rd_expert/rd"]
    assert "makes no difference beyond seed noise" in lines["rd_gii/rd"]
    assert lines["full/full_plain"].startswith("- the GII gate") and "does not help" in lines["full/full_plain"]
    assert "I-AUROC 50.2 vs 54.6" in lines["full/full_plain"]
    assert "the best I-AUROC is 56.6 (50 is chance)" in text
    good = {k: _metrics(99, 98, 90 + (k == "full") * 5) for k in rows}
    text = findings("cap", good)
    assert "helps (higher AUPRO@0.3)" in text and "50 is chance" not in text
    assert findings("cap", {"full": good["full"]}) == ""  # nothing to compare


def _zoo(tmp_path, products):
    for product, variants in products.items():
        for variant, numbers in variants.items():
            folder = tmp_path / f"{product}_{variant}_128px"
            folder.mkdir()
            config = {"model": {"variant": variant, "image_size": 128}, "dataset": {"category": product},
                      "training": {"preset": "quick", "iterations": 200, "image_size": 128, "backbone": "b"},
                      "metrics": {"teacher/gated": _metrics(*numbers)}}
            (folder / "config.json").write_text(json.dumps(config))
            (folder / "model.safetensors").write_bytes(b"")
    registry = Registry()
    registry.scan(tmp_path)
    return registry


def test_the_product_table_and_text_follow_the_selected_product(tmp_path, parts):
    from rdexpert.app.sessions import Sessions
    from rdexpert.app.tab_ablations import product_variants, walkthrough_checkpoint

    registry = _zoo(tmp_path, {"cap": {"rd": (90, 91, 80), "full": (95.5, 96, 85.25)},
                               "bolt": {"rd": (60, 70, 50), "rd_gii": (61, 70, 50)}, "nut": {"rd": (1, 2, 3)}})
    rows = product_rows(registry)
    assert list(rows) == ["bolt", "cap"]  # nut has one variant: nothing to compare
    table = product_table(rows)
    assert "| variant | bolt | cap |" in table
    assert "| `rd` | 60.0 / 70.0 / 50.0 | 90.0 / 91.0 / 80.0 |" in table
    assert "| `rd_gii` | 61.0 / 70.0 / 50.0 | – / – / – |" in table
    assert "| `full` | – / – / – | 95.5 / 96.0 / 85.2 |" in table
    text = stored_variants_text(registry, "cap")
    assert "variants of **cap**" in text and "95.5" in text and "61.0" not in text
    assert "helps (higher I-AUROC, P-AUROC, AUPRO&#64;0.3): I-AUROC 95.5 vs 90.0" in text
    assert "@" not in text  # "AUPRO@0.3" would be an e-mail link in the page
    assert "Only `rd` checkpoint(s) of category `nut`" in stored_variants_text(registry, "nut")

    tab = parts.ablations
    sessions = Sessions(registry, tmp_path / "work")
    examples = ExampleSet.scan(ROOT / "assets" / "examples")
    if len(examples.products) >= 2:  # a walkthrough on screen of one product's example, then another product
        first, second = list(examples.products)[:2]
        (tmp_path / "zoo").mkdir()
        zoo = _zoo(tmp_path / "zoo", {first: {"rd": (1, 2, 3)}, second: {"rd": (4, 5, 6)}})
        keys = {zoo.get(k).category: k for k in zoo.choices()}
        example = examples.products[first][0].path
        out = walkthrough_checkpoint(tab, Sessions(zoo, tmp_path / "w2"), examples, keys[second], None, example,
                                     keys[first], "teacher", "gated")
        assert out[tab.source] is None and out[tab.shown] is None  # not run through the other product's model
        assert f"click one of the {second} examples" in out[tab.message]
        assert out[tab.variants_text] == stored_variants_text(zoo, second)
    for product in ("cap", "bolt"):
        key = next(k for k in registry.choices() if registry.get(k).category == product)
        out = product_variants(tab, sessions, key)
        assert out[tab.variants] is None and out[tab.variants_title] == f"### Trained variants of {product}"
        assert out[tab.variants_text] == stored_variants_text(registry, product)


def test_the_shipped_products_text_quotes_their_stored_metrics():
    """On the shipped checkpoints (whatever they are): every number in a product's findings is one of its
    variants' stored metrics, rounded."""
    registry = Registry()
    registry.scan(ROOT / "checkpoints", source="shipped")
    rows = product_rows(registry)
    if not rows:
        pytest.skip("no shipped product has two trained variants")
    for product, found in rows.items():
        stored = {f"{100 * m[k]:.1f}" for m in found.values() for k in ("image_auroc", "pixel_auroc", "aupro")}
        text = findings(product, found)
        quoted = [w.strip(",.:") for line in text.splitlines() for w in line.split() if w[:1].isdigit()]
        numbers = [w for w in quoted if "." in w and w not in ("0.3",)]
        assert numbers and set(numbers) <= stored, (product, set(numbers) - stored)
