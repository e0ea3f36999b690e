"""Every tab in Chromium at two widths, desktop (1400 x 900) and phone (400 x 850): after each action the
answer (verdict, message, progress, panel caption) is in the window, nothing is wider than the page or squeezed
narrower than its text, tables keep their numbers on one line, and every panel's caption matches its controls.

One served app (the package's ``served_app``) and one Chromium for the module; the ``screen`` fixture is one
browser page per width (module scope, parametrized: every test runs at ``desktop`` first, then at ``phone``).
Tests run in file order and share the page: the fine-tune made in the Fine-tune test is the one loaded back.
They need Debian's Chromium at /usr/bin/chromium; without it they are skipped.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("gradio")

from .support import (  # noqa: E402
    ARTIFACTS,
    CAPS_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DEMO,
    EXAMPLES,
    GRADIO_WARNINGS,
    ROOT,
    WIDTHS,
    assert_in_view,
    jpeg_bytes,
    layout_problems,
    mpdd_zip,
    pick_checkpoint,
    pick_demo,
    png_bytes,
    skip_without_mpdd,
    without_data,
)

pytestmark = GRADIO_WARNINGS
GRADIO_CLIENT_WARNING = "Method not implemented."  # gradio's own client, when an event's stream closes


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("Chromium not found at /usr/bin/chromium (apt-get install -y chromium); browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module", params=list(WIDTHS))
def screen(request, chromium, app_url):
    """The page at one width (a fresh browser context: a visitor of its own), its console kept in ``.console``."""
    width, height = WIDTHS[request.param]
    context = chromium.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console = []
    page.on("console", lambda message: page.console.append((message.type, message.text)))
    page.goto(app_url)
    page.wait_for_selector("#rdx-examples button.thumbnail-item")
    pick_demo(page)  # after the page-load events
    page.width_name = request.param
    yield page
    context.close()


def _fits(page, where: str) -> None:
    problems = layout_problems(page)
    assert problems == {"wide": [], "squeezed": [], "broken": []}, (page.width_name, where, problems)


def _wait(page, selector: str, text: str, timeout: float = 120_000) -> None:
    page.locator(selector).filter(has_text=text).first.wait_for(timeout=timeout)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}_{page.width_name}.png"))


_pick_checkpoint = pick_checkpoint
TINY_RD = "metal_plate · rd · 64 px · 2 iterations · local"  # conftest's tiny rd


# -- Inspect ------------------------------------------------------------------------------------------------
def test_inspect_the_verdict_of_an_example_is_in_view(screen):
    """Item 3: the examples sit at the bottom on a phone; the verdict comes into view. Item 11: the bold
    headline's capital A is as tall as its N."""
    _tab(screen, "Inspect")
    screen.locator("#rdx-examples button.thumbnail-item").last.scroll_into_view_if_needed()
    screen.locator("#rdx-examples button.thumbnail-item").last.click()  # defective: val_00017
    _wait(screen, "#rdx-inspect-info", "val_00017")
    assert_in_view(screen, "#rdx-verdict")
    assert "ground truth: defective" in screen.locator("#rdx-verdict").inner_text()
    a, n = screen.locator("#rdx-verdict .rdx-verdict > div").first.evaluate(CAPS_JS)
    assert abs(a - n) < 0.5, (a, n)  # "ᴀNOMᴀLOUS": the A came from a face holding a few glyphs only
    _fits(screen, "inspect, example")
    _shot(screen, "widths_inspect_example")


def test_inspect_refusals_are_in_view(screen, tmp_path):
    """Item 3: "Upload an image or click an example." and a truncated file's message showed 160 px below a
    900-px window, under an empty result area; they are now at the top of the result area, in view."""
    _tab(screen, "Inspect")
    screen.locator("#rdx-run").click()
    _wait(screen, "#rdx-inspect-message", "Upload an image or click an example.")
    assert_in_view(screen, "#rdx-inspect-message")
    skip_without_mpdd()
    data = jpeg_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    screen.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    screen.locator("#rdx-files input[type=file]").set_input_files(str(truncated))
    _wait(screen, "#rdx-inspect-message", "truncated")  # inspected at once: no button to press
    assert_in_view(screen, "#rdx-inspect-message")
    _fits(screen, "inspect, refusal")
    screen.locator("#rdx-files button[aria-label=Clear]").click()


def test_inspect_a_new_upload_is_inspected_alone_and_captions_are_whole(screen, tmp_path):
    """Item 4: two images, then a third: the third alone is inspected and shown (the box appended it to the
    others, which then ran all three and showed the first). Results gallery captions are not cut."""
    _tab(screen, "Inspect")
    two = [EXAMPLES / "good_test_00003.png", EXAMPLES / "defect_train_00045.png"]
    screen.locator("#rdx-files input[type=file]").set_input_files([str(p) for p in two])
    screen.locator("#rdx-results button.thumbnail-item").nth(1).wait_for()
    _wait(screen, "#rdx-verdict", "2 images in")
    captions = screen.locator("#rdx-results .caption-label")
    assert captions.count() == 2
    for k in range(2):
        text = captions.nth(k).inner_text()
        assert re.search(r"\d\.\d\d (normal|ANOMALOUS)", text), text
        assert captions.nth(k).evaluate("e => e.scrollWidth <= e.clientWidth + 1"), text  # whole, no "…"
    _fits(screen, "inspect, two results")
    third = tmp_path / "third_part.png"
    third.write_bytes((EXAMPLES / "defect_val_00017.png").read_bytes())
    screen.locator("#rdx-files input[type=file]").set_input_files(str(third))
    _wait(screen, "#rdx-inspect-info", "third_part.png")
    assert "1 image in" in screen.locator("#rdx-verdict").inner_text()
    assert screen.locator("#rdx-files").inner_text().count(".png") == 1  # the box holds the new file only
    assert not screen.locator("#rdx-results").is_visible()
    assert_in_view(screen, "#rdx-verdict")
    screen.locator("#rdx-files button[aria-label=Clear]").click()


# -- Ablations ----------------------------------------------------------------------------------------------
def _panel(page, selector: str) -> tuple[str, str]:
    """(setting in the picture's caption, setting in the first line of its text) of a panel."""
    caption = page.locator(f'{selector} [data-testid="block-label"]').inner_text()
    return caption.split("reference ")[-1].replace(" · GII ", " · ").strip(), caption


def test_ablations_panels_show_the_setting_their_controls_show(screen):
    """Item 1: reference expert and gate open chosen, then an example clicked: the chosen-combination panel
    shows expert · open (it showed teacher · gated under those radios); every panel's caption is its text's
    setting; the answer is in view (item 3) and the tab fits a phone (item 2)."""
    _tab(screen, "Ablations")
    screen.locator("#rdx-abl-reference label").filter(has_text="expert").click()
    screen.locator("#rdx-abl-gate label").filter(has_text="open").click()
    _wait(screen, "#rdx-abl-custom-text", "expert · open")  # on the image inspected last
    screen.locator("#rdx-abl-examples button.thumbnail-item").nth(3).click()
    _wait(screen, "#rdx-abl-message", "defect_train_00066")
    _wait(screen, "#rdx-abl-variants-text", "Stored test metrics")
    assert_in_view(screen, "#rdx-abl-message")
    setting, caption = _panel(screen, "#rdx-abl-custom")
    assert setting == "expert · open", caption
    assert screen.locator("#rdx-abl-custom-text").inner_text().startswith("expert · open — calibrated score")
    for k in range(4):
        setting, caption = _panel(screen, f"#rdx-abl-panel-{k}")
        assert screen.locator(f"#rdx-abl-text-{k}").inner_text().startswith(f"{setting} — "), (k, caption)
    assert screen.locator("#rdx-abl-text-0").inner_text().count("This checkpoint's default") == 1
    _fits(screen, "ablations")
    _shot(screen, "widths_ablations")

    screen.locator("#rdx-abl-gate label").filter(has_text="closed").click()
    _wait(screen, "#rdx-abl-custom-text", "expert · closed")
    assert _panel(screen, "#rdx-abl-custom")[0] == "expert · closed"
    assert_in_view(screen, "#rdx-abl-custom")


def test_ablations_pictures_read(screen):
    """Item 11: the diagram has no label over it and is shown at about its own size on a desktop; the gate maps
    lie over the image with a colour bar below, their captions in the text; item 5: every shipped variant of the
    category is compared (full_plain too)."""
    _tab(screen, "Ablations")
    diagram = screen.locator("#rdx-abl-diagram")
    labels = diagram.locator('[data-testid="block-label"]')
    assert not any(labels.nth(k).is_visible() for k in range(labels.count()))  # nothing over its title
    shown, natural, room = diagram.locator("img").evaluate(
        "e => e.decode().then(() => [e.clientWidth, e.naturalWidth, e.closest('.block').clientWidth])")
    assert shown >= 0.9 * min(natural, room - 20), (shown, natural, room)
    gates = screen.locator("#rdx-abl-gates button.thumbnail-item img")
    gates.first.scroll_into_view_if_needed()
    sizes = [gates.nth(k).evaluate("e => e.decode().then(() => [e.naturalWidth, e.naturalHeight])")
             for k in range(gates.count())]
    assert len(sizes) == 2 and all(h > w for w, h in sizes)  # the colour bar under each square map
    assert "s at 1/16 (stride 16)" in screen.locator("#rdx-abl-gates-text").inner_text()
    if (DEMO / "config.json").is_file() and (ROOT / "checkpoints" / "metal_plate_full_plain_128px").is_dir():
        assert "full_plain" in screen.locator("#rdx-abl-variants-text").inner_text()
        assert screen.locator("#rdx-abl-variants button.thumbnail-item").count() == 5


def _checked(page, selector: str) -> str:
    return page.locator(f"{selector} input:checked").evaluate("e => e.value")


def test_switching_the_product_switches_examples_and_ablations(screen, served_app):
    """Issue 23: picking another product's checkpoint switches both example galleries to that product's images
    at once, the trained-variants heading and stored-metrics text to that product, and the walkthrough to that
    checkpoint, every panel's caption still matching its controls; back on the demo product, its examples
    return."""
    demo = served_app[0]
    registry, examples = demo.rdx_config.registry, demo.rdx_config.examples
    demo_product = registry.get(screen.locator("#rdx-checkpoint input").input_value()).category
    key = next((k for k in registry.choices() if registry.get(k).category != demo_product
                and examples.known(registry.get(k).category)), None)
    if key is None:
        pytest.skip("one product only: nothing to switch to")
    product = registry.get(key).category
    expected = [caption for _, caption in examples.gallery(product)]
    _tab(screen, "Ablations")
    _pick_checkpoint(screen, key)
    _wait(screen, "#rdx-abl-examples", f"{product} test images")
    assert screen.locator("#rdx-abl-examples .caption-label").all_inner_texts() == expected
    _wait(screen, "#rdx-abl-variants-title", f"Trained variants of {product}")
    if screen.locator("#rdx-abl-message").inner_text().startswith("The image was"):  # a walkthrough was on screen
        assert f"click one of the {product} examples" in screen.locator("#rdx-abl-message").inner_text()
    assert product in screen.locator("#rdx-abl-variants-text").inner_text()
    defective = max(i for i, caption in enumerate(expected) if caption.startswith("defective"))
    name = examples.gallery(product)[defective][0].rsplit("/", 1)[-1]
    screen.locator("#rdx-abl-examples button.thumbnail-item").nth(defective).click()
    _wait(screen, "#rdx-abl-message", name)
    assert key in screen.locator("#rdx-abl-message").inner_text()
    assert_in_view(screen, "#rdx-abl-message")
    for k in range(4):  # each panel's caption is its text's setting
        setting, caption = _panel(screen, f"#rdx-abl-panel-{k}")
        assert screen.locator(f"#rdx-abl-text-{k}").inner_text().startswith(f"{setting} — "), (k, caption)
    radios = f"{_checked(screen, '#rdx-abl-reference')} · {_checked(screen, '#rdx-abl-gate')}"
    assert _panel(screen, "#rdx-abl-custom")[0] == radios
    assert screen.locator("#rdx-abl-custom-text").inner_text().startswith(f"{radios} — calibrated score")
    _fits(screen, f"ablations, {product}")
    _shot(screen, "widths_ablations_other_product")

    _tab(screen, "Inspect")
    _wait(screen, "#rdx-examples", f"{product} test images")
    assert screen.locator("#rdx-examples .caption-label").all_inner_texts() == expected
    screen.locator("#rdx-examples button.thumbnail-item").nth(defective).scroll_into_view_if_needed()
    screen.locator("#rdx-examples button.thumbnail-item").nth(defective).click()
    _wait(screen, "#rdx-inspect-info", name)
    assert "ground truth: defective" in screen.locator("#rdx-verdict").inner_text()
    assert "ground-truth defect mask" in screen.locator("#rdx-inspect-info").inner_text()
    assert_in_view(screen, "#rdx-verdict")
    _fits(screen, f"inspect, {product}")

    pick_demo(screen)  # back: the demo product's examples again
    assert screen.locator("#rdx-examples .caption-label").all_inner_texts() == [
        caption for _, caption in examples.gallery(demo_product)]


# -- Fine-tune ----------------------------------------------------------------------------------------------
def test_finetune_forty_files_do_not_push_start_away(screen, tmp_path):
    """Item 3: forty uploaded files made a 4,380-px page with Start 2,000 px down; the list scrolls in its box."""
    _tab(screen, "Fine-tune")
    parts = []
    for i in range(40):
        parts.append(tmp_path / f"part_{i:02d}.png")
        parts[-1].write_bytes(png_bytes(i, size=32))
    screen.locator("#rdx-ft-normal input[type=file]").set_input_files([str(p) for p in parts])
    _wait(screen, "#rdx-ft-normal-count", "40 files")
    box = screen.locator("#rdx-ft-normal").bounding_box()
    start = screen.locator("#rdx-ft-start").bounding_box()
    assert box["height"] <= 320, box
    assert start["y"] - (box["y"] + box["height"]) < (1400 if screen.width_name == "phone" else 400), (box, start)
    _fits(screen, "fine-tune, forty files")
    screen.locator("#rdx-ft-normal button[aria-label=Clear]").click()


def test_finetune_progress_result_and_loading_the_download_back(screen, tmp_path):
    """Item 3: the progress is in view as soon as Start is pressed; item 6: the result says, in plain words,
    which reference the model scores against and what its threshold means; item 10: the downloaded zip loads
    back into the page and is selected."""
    skip_without_mpdd()
    _tab(screen, "Fine-tune")
    upload = mpdd_zip(tmp_path / "parts.zip", normal=4, defects=1, size=64)
    screen.locator("#rdx-ft-normal input[type=file]").set_input_files(str(upload))
    _wait(screen, "#rdx-ft-normal-count", "1 file")
    iterations = screen.locator("#rdx-ft-iterations input[type=number]")
    iterations.fill("3")
    iterations.press("Enter")
    screen.locator("#rdx-ft-size input").click()
    screen.get_by_role("option", name="64", exact=True).click()
    screen.locator("#rdx-ft-variant input").click()
    screen.get_by_role("option", name="rd", exact=True).click()
    screen.locator("#rdx-ft-name input, #rdx-ft-name textarea").first.fill(f"w-{screen.width_name}")
    screen.wait_for_timeout(300)
    screen.locator("#rdx-ft-start").click()
    screen.locator("#rdx-ft-status .rdx-progress").wait_for()
    assert_in_view(screen, "#rdx-ft-status")
    _wait(screen, "#rdx-ft-status", "Done in", timeout=300_000)
    assert_in_view(screen, "#rdx-ft-status")
    result = screen.locator("#rdx-ft-metrics").inner_text()
    assert "Scores against the" in result and "Threshold: set on" in result and "0.5 is chance" in result
    _fits(screen, "fine-tune, done")
    _shot(screen, "widths_finetune")

    link = screen.locator("#rdx-ft-download a").first
    with screen.expect_download() as download:
        link.click()
    archive = tmp_path / "download.zip"
    download.value.save_as(archive)
    screen.locator("#rdx-ft-load input[type=file]").set_input_files(str(archive))
    _wait(screen, "#rdx-ft-load-status", "Loaded")
    assert_in_view(screen, "#rdx-ft-load-status")
    assert "loaded" in screen.locator("#rdx-checkpoint input").input_value()
    assert f"w-{screen.width_name}" in screen.locator("#rdx-checkpoint input").input_value()
    _pick_checkpoint(screen, TINY_RD)  # back to a shared checkpoint for the next tests


# -- Evaluate -----------------------------------------------------------------------------------------------
def test_evaluate_summary_plots_and_a_row_opened_in_inspect(screen):
    """Item 2: the plots stack on a phone, their legends below the curves, titles whole; item 3: the summary is
    in view; item 8: a row opens in Inspect with its ground truth, in view."""
    skip_without_mpdd()
    _tab(screen, "Evaluate")
    _pick_checkpoint(screen, TINY_RD)
    screen.locator("#rdx-ev-run").click()
    _wait(screen, "#rdx-ev-summary", "images in", timeout=300_000)
    assert_in_view(screen, "#rdx-ev-summary")
    screen.locator("#rdx-ev-hist .js-plotly-plot").wait_for()
    roc, hist = (screen.locator(f"#rdx-ev-{k}").bounding_box() for k in ("roc", "hist"))
    if screen.width_name == "phone":
        assert hist["y"] >= roc["y"] + roc["height"] - 1, (roc, hist)  # one below the other
    else:
        assert abs(hist["y"] - roc["y"]) < 2  # side by side
    for plot in ("#rdx-ev-roc", "#rdx-ev-hist"):
        legend = screen.locator(f"{plot} g.legend").bounding_box()
        area = screen.locator(f"{plot} .nsewdrag").first.bounding_box()
        assert legend["y"] >= area["y"] + area["height"], (plot, legend, area)  # not over the curves
        title, svg = screen.locator(f"{plot} .gtitle").bounding_box(), screen.locator(f"{plot} svg.main-svg").first.bounding_box()
        assert title["x"] + title["width"] <= svg["x"] + svg["width"], plot
    _fits(screen, "evaluate")
    _shot(screen, "widths_evaluate")
    cell = screen.locator('#rdx-ev-table [data-testid="cell-0-1"]')
    name = cell.inner_text().strip()
    truth = screen.locator('#rdx-ev-table [data-testid="cell-0-2"]').inner_text().strip()
    cell.click()
    _wait(screen, "#rdx-inspect-info", name)
    assert screen.get_by_role("tab", name="Inspect").get_attribute("aria-selected") == "true"
    assert f"ground truth: {truth}" in screen.locator("#rdx-verdict").inner_text()  # the row's label, shown
    assert_in_view(screen, "#rdx-verdict")


def test_evaluate_without_the_data_a_row_shows_its_stored_result(screen, served_app, monkeypatch, tmp_path):
    """Item 8: without the data folder (a Space) a row click did nothing; it shows the stored score and overlay."""
    key = without_data(monkeypatch, served_app[0].rdx_config.registry, tmp_path)
    _tab(screen, "Evaluate")
    _pick_checkpoint(screen, key)
    screen.locator("#rdx-ev-run").click()
    _wait(screen, "#rdx-ev-summary", "stored results")
    assert "cannot be opened in Inspect" in screen.locator("#rdx-ev-summary").inner_text()
    screen.locator('#rdx-ev-table [data-testid="cell-0-1"]').click()
    _wait(screen, "#rdx-ev-detail", "stored result")
    assert_in_view(screen, "#rdx-ev-detail")
    assert screen.get_by_role("tab", name="Evaluate").get_attribute("aria-selected") == "true"
    assert "ground truth: defective" in screen.locator("#rdx-ev-detail").inner_text()
    assert screen.locator("#rdx-ev-detail-image img").is_visible()  # the overlay `rdexpert test` drew
    _fits(screen, "evaluate, stored")


def test_the_page_logs_no_errors(screen):
    """Item 11: no console errors; gradio's own client warns "Method not implemented." when an event's stream
    closes (gradio's code, not this app's): counted, not failed."""
    errors = [text for kind, text in screen.console if kind == "error"]
    others = [text for kind, text in screen.console if kind == "warning" and text != GRADIO_CLIENT_WARNING]
    assert not errors and not others, (errors, others)
    print(f"\n{screen.width_name}: {sum(t == GRADIO_CLIENT_WARNING for _, t in screen.console)} gradio client "
          f"warnings, {len(screen.console)} console messages")
