"""The real page in Chromium: every tab clicked through, screenshots of each in tests/artifacts/ (gitignored).

The app runs in this process on a free localhost port (the ``served_app``
fixture). These tests share one page and run in file order: the fine-tune
made in one is what the second visitor must not see. They need Debian's
Chromium at /usr/bin/chromium (``apt-get install -y chromium``); without it
they are skipped, with that reason.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio")

from helpers import MPDD  # noqa: E402

from .support import (  # noqa: E402
    ARTIFACTS,
    DEMO,
    EXAMPLES,
    GRADIO_WARNINGS,
    jpeg_bytes,
    mpdd_zip,
    png_bytes,
    stored_verdict,
    without_data,
    zip_files,
)

pytestmark = GRADIO_WARNINGS


def _shot(page, name: str) -> None:
    page.wait_for_timeout(400)  # let plots and images settle
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


@contextlib.contextmanager
def _visitor(page, app_url: str, width: int = 1400, height: int = 1000):
    """The page loaded by another visitor (a new browser context, nothing shared), with this viewport."""
    context = page.context.browser.new_context(viewport={"width": width, "height": height})
    try:
        other = context.new_page()
        other.set_default_timeout(60_000)
        other.goto(app_url)
        other.wait_for_selector("#rdx-examples button.thumbnail-item")
        yield other
    finally:
        context.close()


def _wait_text(page, selector: str, text: str, timeout: float = 60_000) -> None:
    page.locator(selector).filter(has_text=text).first.wait_for(timeout=timeout)


def _inspect_upload(page, paths: list[Path], name: str) -> str:
    """Upload ``paths`` in Inspect, run it, wait until ``name`` is shown; the verdict's text (upload cleared)."""
    _tab(page, "Inspect")
    page.locator("#rdx-files input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_timeout(500)
    page.locator("#rdx-run").click()
    _wait_text(page, "#rdx-inspect-info", name)
    return page.locator("#rdx-verdict").inner_text()


def _clear_upload(page) -> None:
    page.locator("#rdx-files button[aria-label=Clear]").click()


def test_page_inspect_example_and_threshold(page):
    banner = page.locator("#rdx-banner").inner_text()
    assert "broken" in banner and "not available" in banner  # a broken checkpoint is a message, not a crash
    started = time.perf_counter()
    page.locator("#rdx-examples button.thumbnail-item").nth(3).click()  # a defective example
    _wait_text(page, "#rdx-verdict", "calibrated score")
    print(f"\nInspect round trip in the browser: {time.perf_counter() - started:.2f} s")
    verdict = page.locator("#rdx-verdict").inner_text()
    assert "device cpu" in verdict or "device cuda" in verdict
    assert "threshold 0.50" in verdict
    # (b) a defect example: how many times the threshold, and the example's ground truth beside the verdict the
    # demo's stored test report gives that image
    assert re.search(r"\d+\.\d\d? × threshold", verdict), verdict
    assert "ground truth: defective · model: " in verdict
    expected = stored_verdict(DEMO, "defect/train_00066.png")
    if expected:
        assert verdict.startswith(expected) and f"model: {expected}" in verdict, verdict
    for k in range(3):
        assert page.locator(f"#rdx-scale-{k} img").count() == 1
    assert page.locator("#rdx-fused img").count() == 1
    _shot(page, "inspect_defect_example")

    fused_before = page.locator("#rdx-fused img").get_attribute("src")
    slider = page.locator("#rdx-threshold input[type=number]")
    slider.fill("0.05")
    slider.press("Enter")
    _wait_text(page, "#rdx-verdict", "threshold 0.05")
    assert "ANOMALOUS" in page.locator("#rdx-verdict").inner_text()  # everything is above a 0.05 threshold
    page.wait_for_function(
        "src => document.querySelector('#rdx-fused img') && document.querySelector('#rdx-fused img').src !== src",
        arg=fused_before,
    )
    _shot(page, "inspect_threshold_0.05")
    slider.fill("0.5")
    slider.press("Enter")
    _wait_text(page, "#rdx-verdict", "threshold 0.50")


def test_page_inspect_normal_example(page):
    """(a) The normal example: verdict NORMAL, with the example's ground truth (its caption) beside it."""
    _tab(page, "Inspect")
    caption = page.locator("#rdx-examples .caption-label").nth(1).inner_text()
    assert caption.startswith("normal:")
    page.locator("#rdx-examples button.thumbnail-item").nth(1).click()
    _wait_text(page, "#rdx-verdict", "ground truth: normal")
    verdict = page.locator("#rdx-verdict").inner_text()
    expected = stored_verdict(DEMO, f"good/{caption.split(': ')[1]}.png")  # what the demo's test report says
    if expected:
        assert verdict.startswith(expected) and f"ground truth: normal · model: {expected}" in verdict, verdict
    assert caption.split(": ")[1] in page.locator("#rdx-inspect-info").inner_text()  # the example's file
    _shot(page, "inspect_normal_example")


def test_page_a_texture_is_flagged_as_not_the_trained_product(page, app_checkpoints, dtd_root):
    """(c) A DTD texture is not a metal plate: the out-of-distribution warning stands above the verdict."""
    if not app_checkpoints["demo"]:
        pytest.skip("the shipped demo checkpoint (with its out-of-distribution check) is not here")
    texture = dtd_root / "banded" / "banded_0002.jpg"
    verdict = _inspect_upload(page, [texture], texture.name)
    assert "Not what this model was trained on" in verdict and "metal_plate" in verdict
    assert "the verdict below is not meaningful" in verdict and "ground truth" not in verdict
    assert "NOT THE TRAINED PRODUCT" in verdict and "ANOMALOUS" not in verdict  # no red defect verdict under it
    warning, shown = page.locator("#rdx-verdict .rdx-ood"), page.locator("#rdx-verdict .rdx-verdict")
    assert warning.is_visible() and warning.bounding_box()["y"] < shown.bounding_box()["y"]
    _shot(page, "inspect_out_of_distribution_texture")
    _clear_upload(page)


def test_page_a_non_square_upload_is_drawn_at_its_own_aspect_ratio(page, tmp_path):
    """(g) A 300 x 180 crop of a plate: the input, the map and the scale maps are shown 5:3, not square."""
    wide = tmp_path / "wide_plate.png"
    plate = Image.open(MPDD / "metal_plate" / "test" / "defect" / "test_00026.png").convert("RGB")
    plate.crop((100, 150, 400, 330)).save(wide)  # 300 wide, 180 high
    _inspect_upload(page, [wide], wide.name)
    # what is seen: the picture's own shape, unless the page stretches ("fill") or cuts ("cover") it to its box
    seen = """e => e.decode().then(() => ['fill', 'cover'].includes(getComputedStyle(e).objectFit)
                  ? e.clientWidth / e.clientHeight : e.naturalWidth / e.naturalHeight)"""
    for selector in ("#rdx-input img", "#rdx-fused img", "#rdx-scale-0 img"):
        ratio = page.locator(selector).evaluate(seen)
        assert ratio == pytest.approx(300 / 180, abs=0.02), (selector, ratio)
    page.locator("#rdx-fused").scroll_into_view_if_needed()
    _shot(page, "inspect_non_square_upload")
    _clear_upload(page)


def test_page_upload_several_images_to_inspect(page, tmp_path):
    _tab(page, "Inspect")
    paths = []
    for name in ("good_test_00003.png", "defect_train_00045.png"):
        paths.append(EXAMPLES / name)
    page.locator("#rdx-files input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_timeout(500)
    page.locator("#rdx-run").click()
    page.locator("#rdx-results button.thumbnail-item").nth(1).wait_for()
    assert "2 images in" in page.locator("#rdx-verdict").inner_text()
    page.locator("#rdx-results button.thumbnail-item").nth(1).click()
    _wait_text(page, "#rdx-inspect-info", "defect_train_00045")
    _shot(page, "inspect_two_images")

    fake = tmp_path / "scan.png"
    fake.write_text("not an image")
    page.locator("#rdx-files button[aria-label=Clear]").click()
    page.locator("#rdx-files input[type=file]").set_input_files(str(fake))
    page.wait_for_timeout(500)
    page.locator("#rdx-run").click()
    _wait_text(page, "#rdx-inspect-message", "not an image")
    page.locator("#rdx-files button[aria-label=Clear]").click()

    if (MPDD / "metal_plate").is_dir():  # a truncated JPEG: the app's message, not gradio's bare "Error"
        data = jpeg_bytes()
        truncated = tmp_path / "cut_off.jpg"
        truncated.write_bytes(data[: len(data) // 2])
        page.locator("#rdx-files input[type=file]").set_input_files(str(truncated))
        page.wait_for_timeout(500)
        page.locator("#rdx-run").click()
        _wait_text(page, "#rdx-inspect-message", "truncated")
        assert "cut_off.jpg" in page.locator("#rdx-inspect-message").inner_text()
        page.locator("#rdx-files button[aria-label=Clear]").click()


def test_page_ablation_walkthrough_and_switch(page):
    _tab(page, "Ablations")
    page.locator("#rdx-abl-run").click()  # the last Inspect request was refused: nothing to walk through yet
    _wait_text(page, "#rdx-abl-message", "Pick an image")
    page.locator("#rdx-abl-examples button.thumbnail-item").nth(3).click()
    _wait_text(page, "#rdx-abl-text-0", "teacher · gated")
    assert "defect_train_00066" in page.locator("#rdx-abl-message").inner_text()
    for k, words in enumerate(["teacher · gated", "expert · gated", "teacher · open", "teacher · closed"]):
        assert words in page.locator(f"#rdx-abl-text-{k}").inner_text()
    if DEMO.is_dir() and "teacher/closed" in json.loads((DEMO / "config.json").read_text()).get("metrics", {}):
        assert "Stored test metrics of this setting" in page.locator("#rdx-abl-text-3").inner_text()
    # the tiny rd variant (and the full one) of metal_plate are compared side by side
    _wait_text(page, "#rdx-abl-variants-text", "Stored test metrics")
    assert page.locator("#rdx-abl-variants button.thumbnail-item").count() >= 2
    assert page.locator("#rdx-abl-gates button.thumbnail-item").count() == 2  # s at the 2 gated scales
    assert "per-pixel cosine similarity" in page.locator("#rdx-abl-gates-text").inner_text()
    for k in (1, 2, 3):
        assert "Difference from the default map" in page.locator(f"#rdx-abl-text-{k}").inner_text()
        assert "What to look at" in page.locator(f"#rdx-abl-text-{k}").inner_text()
    assert page.locator("#rdx-abl-diagram img").count() == 1
    caption = page.locator("#rdx-abl-examples .caption-label").nth(2)  # "defective: train_00045"
    assert caption.evaluate("e => e.scrollWidth <= e.clientWidth + 1")  # whole, without pointing at it
    # (d) the trained variants side by side and the GII gate maps, on screen
    variants = page.locator("#rdx-abl-variants button.thumbnail-item img")
    assert variants.count() >= 2 and all(variants.nth(k).is_visible() for k in range(variants.count()))
    page.locator("#rdx-abl-gates").scroll_into_view_if_needed()
    gates = page.locator("#rdx-abl-gates button.thumbnail-item img")
    assert all(gates.nth(k).is_visible() and gates.nth(k).evaluate("e => e.naturalWidth > 0") for k in range(2))
    _shot(page, "ablations_variants_and_gate_maps")
    page.locator("#rdx-abl-gate label").filter(has_text="open").click()
    _wait_text(page, "#rdx-abl-custom-text", "teacher · open")
    page.locator("#rdx-abl-reference label").filter(has_text="expert").click()
    _wait_text(page, "#rdx-abl-custom-text", "expert · open")
    _shot(page, "ablations")


def test_page_bad_uploads_are_refused_with_a_message(page, tmp_path):
    _tab(page, "Fine-tune")
    evil = zip_files(
        tmp_path / "evil.zip",
        {"good/a.png": png_bytes(0), "good/b.png": png_bytes(1), "../../outside.png": png_bytes(2)},
    )
    page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(evil))
    page.wait_for_timeout(500)
    page.locator("#rdx-ft-start").click()
    _wait_text(page, "#rdx-ft-status", "outside the archive")
    assert "Upload refused" in page.locator("#rdx-ft-status").inner_text()
    _shot(page, "finetune_refused_zip")

    fake = tmp_path / "photo.png"
    fake.write_text("this is text, not a PNG")
    page.locator("#rdx-ft-normal button[aria-label=Clear]").click()
    page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(fake))
    page.wait_for_timeout(500)
    page.locator("#rdx-ft-start").click()
    _wait_text(page, "#rdx-ft-status", "could not be read as an image")
    page.locator("#rdx-ft-normal button[aria-label=Clear]").click()


def test_page_evaluate_without_the_data_folder(page, served_app, monkeypatch, tmp_path):
    """A Space or a fresh clone: no data folder, so Evaluate shows the checkpoint's stored test results."""
    key = without_data(monkeypatch, served_app[0].rdx_config.registry, tmp_path)
    assert key in page.locator("#rdx-checkpoint input").input_value()
    _tab(page, "Evaluate")
    page.locator("#rdx-ev-run").click()
    _wait_text(page, "#rdx-ev-summary", "stored results of the test split (no data folder found)")
    assert "I-AUROC" in page.locator("#rdx-ev-summary").inner_text()
    page.locator("#rdx-ev-hist .js-plotly-plot").wait_for()
    stored = len(list((DEMO / "test" / "overlays").glob("*.png")))
    assert page.locator('#rdx-ev-table [data-testid="cell-0-1"]').count() == 1
    assert page.locator(f'#rdx-ev-table [data-testid="cell-{stored - 1}-1"]').count() == 1
    _shot(page, "evaluate_stored_results")


def test_page_finetune_tiny_and_evaluate(page, tmp_path):
    _tab(page, "Fine-tune")
    upload = mpdd_zip(tmp_path / "my_parts.zip", normal=5, defects=2, size=96)
    page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(upload))
    iterations = page.locator("#rdx-ft-iterations input[type=number]")
    iterations.fill("3")
    iterations.press("Enter")
    page.locator("#rdx-ft-size input").click()
    page.get_by_role("option", name="64", exact=True).click()
    page.locator("#rdx-ft-variant input").click()
    page.get_by_role("option", name="rd_gii", exact=True).click()
    page.locator("#rdx-ft-name input, #rdx-ft-name textarea").first.fill("tiny-test")
    page.wait_for_timeout(500)
    page.locator("#rdx-ft-start").click()
    _wait_text(page, "#rdx-ft-status", "Done in", timeout=180_000)
    assert "iteration 3 / 3" in page.locator("#rdx-ft-status").inner_text()
    _wait_text(page, "#rdx-ft-metrics", "selectable")
    assert "I-AUROC" in page.locator("#rdx-ft-metrics").inner_text()  # defects were uploaded: metrics exist
    assert page.locator("#rdx-ft-download a").count() >= 1
    assert page.locator("#rdx-ft-plot .js-plotly-plot").count() == 1
    _shot(page, "finetune_done")

    # the new model is selectable, and evaluable on its held-out + defective uploads
    page.locator("#rdx-checkpoint input").click()
    page.get_by_role("option").filter(has_text="tiny-test").first.click()
    _wait_text(page, "#rdx-checkpoint-info", "fine-tuned")
    assert "/sessions/" not in page.locator("#rdx-checkpoint-info").inner_text()  # a name, not a server path
    _tab(page, "Evaluate")
    page.locator("#rdx-ev-run").click()
    _wait_text(page, "#rdx-ev-summary", "images in")
    assert page.locator("#rdx-ev-roc .js-plotly-plot").count() == 1
    assert page.locator("#rdx-ev-hist .js-plotly-plot").count() == 1
    _shot(page, "evaluate")
    first_image = page.locator('#rdx-ev-table [data-testid="cell-0-1"]')  # row 1, column "image"
    name = first_image.inner_text().strip()
    first_image.click()
    _wait_text(page, "#rdx-inspect-info", name)
    assert "tiny-test" in page.locator("#rdx-inspect-info").inner_text()
    assert page.get_by_role("tab", name="Inspect").get_attribute("aria-selected") == "true"
    _shot(page, "evaluate_row_opened_in_inspect")


def test_page_a_second_visitor_does_not_see_the_first_ones_fine_tune(page, app_url):
    """D1 in two browser contexts (two visitors): the fine-tune above is listed for its page only."""
    with _visitor(page, app_url) as other:
        _wait_text(other, "#rdx-checkpoint-info", "source:")  # the page-load events ran
        other.wait_for_timeout(500)
        other.locator("#rdx-checkpoint input").click()
        other.get_by_role("option").first.wait_for()
        options = other.get_by_role("option").all_inner_texts()
        assert options and not any("tiny-test" in o for o in options), options
        other.keyboard.press("Escape")  # the open list would cover the tabs
        _tab(other, "Fine-tune")
        other.locator("#rdx-ft-base input").click()
        assert not any("tiny-test" in o for o in other.get_by_role("option").all_inner_texts())
    page.locator("#rdx-checkpoint input").click()  # the first visitor still has it
    page.get_by_role("option").first.wait_for()
    assert any("tiny-test" in o for o in page.get_by_role("option").all_inner_texts())
    page.keyboard.press("Escape")


def test_page_on_a_narrow_screen_shows_the_verdict_before_the_controls(page, app_url, tmp_path):
    """At 400 px (a phone) Inspect is one column: upload, verdict and map first, then the threshold and examples;
    picture labels are not covered by their buttons; a Fine-tune upload list is a count."""
    with _visitor(page, app_url, width=400, height=900) as phone:
        phone.locator("#rdx-examples button.thumbnail-item").nth(3).click()
        _wait_text(phone, "#rdx-verdict", "calibrated score")

        def page_tops(selectors: list[str]) -> list[float]:
            """Tops from the top of the page, read in one script: the page may still be scrolling to the
            result, and view-relative positions read one after another would mix scroll positions."""
            return phone.evaluate("(selectors) => selectors.map((s) => document.querySelector(s)"
                                  ".getBoundingClientRect().top + window.scrollY)", selectors)

        order = ["#rdx-files", "#rdx-verdict", "#rdx-fused", "#rdx-threshold", "#rdx-examples"]
        tops = page_tops(order)
        assert tops == sorted(tops), dict(zip(order, tops))
        on_page = tops[1]
        print(f"\nthe verdict's top at 400 px wide: {on_page:.0f} px from the top of the page")
        assert on_page < 900, on_page  # (f) on a phone's first screen, even below the test's broken-checkpoint banner
        assert phone.locator("#rdx-fused").bounding_box()["width"] <= 400
        header = page_tops(["#rdx-checkpoint", "#rdx-checkpoint-info"])
        assert header[0] < header[1]  # the header is stacked too
        for k in range(3):  # each picture's label clears its buttons (side by side they covered it)
            label = phone.locator(f'#rdx-scale-{k} label[data-testid="block-label"]').bounding_box()
            buttons = phone.locator(f"#rdx-scale-{k} .icon-button-wrapper").first.bounding_box()
            assert label["x"] + label["width"] <= buttons["x"] + 1, (k, label, buttons)
        phone.locator("#rdx-verdict").scroll_into_view_if_needed()
        _shot(phone, "inspect_narrow_400px")

        parts = []  # a long upload list collapses to its count
        for i in range(6):
            parts.append(tmp_path / f"part_{i}.png")
            parts[-1].write_bytes(png_bytes(i))
        _tab(phone, "Fine-tune")
        phone.locator("#rdx-ft-normal input[type=file]").set_input_files([str(p) for p in parts])
        _wait_text(phone, "#rdx-ft-normal-count", "6 files")
        assert not phone.locator("#rdx-ft-normal .file-preview-holder").is_visible()
        _shot(phone, "finetune_narrow_400px")
