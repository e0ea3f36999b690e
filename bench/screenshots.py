"""Screenshots of every tab of the app at two widths, as a person sees them right after the tab's main action.

    python bench/screenshots.py                       # into assets/screenshots/
    python bench/screenshots.py --out /tmp/shots --widths desktop
    python bench/screenshots.py --checkpoints /work/zoo_out --only products --startup   # another zoo folder

The app runs in this process on a free localhost port with the shipped checkpoints (and the MPDD data at
../shared/data/mpdd when it is there, for Evaluate and the fine-tune upload); Debian's Chromium (through
Playwright) does, at 1400 x 900 (``desktop``) and at 400 x 850 (``phone``), in a fresh browser context each:

- Inspect: click the first defective example of the product the page opens on; the verdict and maps;
- Ablations: choose reference expert, gate open, then click the same example; the walkthrough's top, once rendered;
- Fine-tune: upload 8 normal and 2 defective MPDD images (a zip) and fine-tune a tiny model (64 px, a few
  iterations); the status, the plain-words outcome and the download;
- Evaluate: evaluate the selected (demo) checkpoint; the summary and the plots.

And per product (every product with shipped examples and a checkpoint), at desktop width: Inspect on its
product's default model with a defective example clicked (``inspect_<product>.png``), and Ablations after the
walkthrough on that example, scrolled to the product's trained variants and what their stored metrics show
(``ablations_<product>.png``).

``--startup`` also measures the time from starting ``python app.py`` (a subprocess, same checkpoints) to a usable
page: the first example thumbnail visible and clickable in Chromium (the page polled every 0.25 s).

Each picture is the window after the action (what is in view, not the whole page), stored as
``<tab>_<width>.png``, reduced to 256 colours so each stays small (a few hundred kB at most). README.md's
"The app" section shows the desktop ones.
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MPDD = ROOT.parent / "shared" / "data" / "mpdd"
WIDTHS = {"desktop": (1400, 900), "phone": (400, 850)}
MAX_BYTES = 300 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upload_zip(path: Path, normal: int = 8, defects: int = 2, size: int = 128) -> Path:
    """good/, defect/ and mask/ folders of real MPDD metal_plate images, resized to ``size``."""
    from PIL import Image

    cat = MPDD / "metal_plate"

    def png(p: Path, mode: str = "RGB") -> bytes:
        buffer = io.BytesIO()
        Image.open(p).convert(mode).resize((size, size)).save(buffer, format="PNG")
        return buffer.getvalue()

    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted((cat / "train" / "good").glob("*.png"))[:normal]:
            zf.writestr(f"parts/good/{p.name}", png(p))
        for p in sorted((cat / "test" / "defect").glob("*.png"))[:defects]:
            zf.writestr(f"parts/defect/{p.name}", png(p))
            zf.writestr(f"parts/mask/{p.stem}_mask.png", png(cat / "ground_truth" / "defect" / f"{p.stem}_mask.png", "L"))
    return path


def save(page, out: Path, name: str) -> Path:
    """The window as a 256-colour PNG (small enough for the repository)."""
    from PIL import Image

    page.wait_for_timeout(600)  # plots and pictures settle
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    path = out / f"{name}.png"
    for colours in (256, 128, 64):
        picture.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True)
        if path.stat().st_size <= MAX_BYTES:
            break
    print(f"{path} ({path.stat().st_size // 1024} kB)")
    return path


def wait_text(page, selector: str, text: str, timeout: float = 300_000) -> None:
    page.locator(selector).filter(has_text=text).first.wait_for(timeout=timeout)


def pick(page, key: str) -> None:
    page.locator("#rdx-checkpoint input").click()
    page.get_by_role("option").filter(has_text=key).first.click()
    wait_text(page, "#rdx-checkpoint-info", key)


def product_defaults(registry, examples) -> dict[str, str]:
    """{product: its default model's key} (the first of the product in the picker) for products with examples."""
    out = {}
    for key in registry.choices():
        product = registry.get(key).category
        if examples.known(product):
            out.setdefault(product, key)
    return out


def wait_idle(page, timeout: float = 300_000) -> None:
    """Until no output of the page shows gradio's "processing | …" (the walkthrough's panels render one by one)."""
    page.wait_for_function("!document.body.innerText.includes('processing |')", timeout=timeout)


def open_page(browser, url: str, width: str):
    """A fresh browser context at one of WIDTHS, on the app, once its examples and checkpoint have loaded."""
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h})
    page = context.new_page()
    page.set_default_timeout(300_000)
    page.goto(url)
    page.wait_for_selector("#rdx-examples button.thumbnail-item")
    wait_text(page, "#rdx-checkpoint-info", "source:")
    return context, page


def shoot_products(browser, url: str, out: Path, registry, examples) -> list[Path]:
    """Inspect and Ablations of every product, at desktop width."""
    context, page = open_page(browser, url, "desktop")
    shots = []
    for product, key in product_defaults(registry, examples).items():
        shown = examples.for_category(product)
        index = next(i for i, e in enumerate(shown) if e.truth == "defective")
        name = Path(shown[index].path).name
        page.get_by_role("tab", name="Inspect").click()
        pick(page, key)
        wait_text(page, "#rdx-examples", f"{product} test images")
        page.locator("#rdx-examples button.thumbnail-item").nth(index).click()
        wait_text(page, "#rdx-inspect-info", name)
        page.evaluate("window.scrollTo(0, 0)")
        shots.append(save(page, out, f"inspect_{product}"))
        page.get_by_role("tab", name="Ablations").click()
        wait_text(page, "#rdx-abl-examples", f"{product} test images")
        page.locator("#rdx-abl-examples button.thumbnail-item").nth(index).click()
        wait_text(page, "#rdx-abl-message", name)
        wait_text(page, "#rdx-abl-variants-title", product)
        page.evaluate("window.scrollTo(0, document.querySelector('#rdx-abl-variants-title').getBoundingClientRect()"
                      ".top + window.scrollY - 8)")
        shots.append(save(page, out, f"ablations_{product}"))
    context.close()
    return shots


def startup_seconds(browser, app_flags: list[str], work: Path, limit: float = 300.0) -> float:
    """Seconds from starting ``python app.py`` to its page with the first example thumbnail clickable."""
    import subprocess
    import urllib.request

    port = free_port()
    began = time.perf_counter()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--workdir",
                               str(work / "startup"), *app_flags], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        while True:
            if time.perf_counter() - began > limit or server.poll() is not None:
                raise RuntimeError(f"python app.py gave no page in {limit:.0f} s (exit code {server.poll()})")
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.25)
        page = browser.new_page()
        page.goto(url)
        page.locator("#rdx-examples button.thumbnail-item").first.click(trial=True, timeout=limit * 1000)
        seconds = time.perf_counter() - began
        page.close()
        return seconds
    finally:
        server.terminate()
        server.wait(timeout=30)


def shoot(browser, url: str, width: str, out: Path, work: Path) -> list[Path]:
    context, page = open_page(browser, url, width)
    shots = []

    captions = page.locator("#rdx-examples .caption-label").all_inner_texts()
    index = next(i for i, caption in enumerate(captions) if caption.startswith("defective"))  # the first defective
    page.locator("#rdx-examples button.thumbnail-item").nth(index).click()
    wait_text(page, "#rdx-verdict", "calibrated score")
    shots.append(save(page, out, f"inspect_{width}"))

    page.get_by_role("tab", name="Ablations").click()
    page.locator("#rdx-abl-reference label").filter(has_text="expert").click()
    page.locator("#rdx-abl-gate label").filter(has_text="open").click()
    page.locator("#rdx-abl-examples button.thumbnail-item").nth(index).click()
    wait_text(page, "#rdx-abl-custom-text", "expert · open")
    wait_text(page, "#rdx-abl-variants-text", "Stored test metrics")
    wait_idle(page)
    page.evaluate("window.scrollTo(0, document.querySelector('#rdx-abl-message').getBoundingClientRect().top"
                  " + window.scrollY - 8)")
    shots.append(save(page, out, f"ablations_{width}"))

    page.get_by_role("tab", name="Fine-tune").click()
    if (MPDD / "metal_plate").is_dir():
        page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(upload_zip(work / f"parts_{width}.zip")))
        wait_text(page, "#rdx-ft-normal-count", "1 file")
        iterations = page.locator("#rdx-ft-iterations input[type=number]")
        iterations.fill("20")
        iterations.press("Enter")
        page.locator("#rdx-ft-size input").click()
        page.get_by_role("option", name="64", exact=True).click()
        page.locator("#rdx-ft-name input, #rdx-ft-name textarea").first.fill("my-parts")
        page.wait_for_timeout(300)
        page.locator("#rdx-ft-start").click()
        wait_text(page, "#rdx-ft-status", "Done in")
    shots.append(save(page, out, f"finetune_{width}"))

    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#rdx-checkpoint input").click()
    page.get_by_role("option").filter(has_text="256 px").first.click()
    page.locator("#rdx-ev-run").click()
    wait_text(page, "#rdx-ev-summary", "I-AUROC")
    page.locator("#rdx-ev-hist .js-plotly-plot").wait_for()
    shots.append(save(page, out, f"evaluate_{width}"))
    context.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "assets" / "screenshots"))
    parser.add_argument("--widths", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    parser.add_argument("--checkpoints", action="append", default=[], metavar="DIR",
                        help="checkpoint folders instead of the shipped checkpoints/ (repeatable)")
    parser.add_argument("--only", choices=["tabs", "products"], default=None,
                        help="only the tabs at each width, or only the per-product pictures (default: both)")
    parser.add_argument("--startup", action="store_true", help="also time python app.py to a usable page")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from rdexpert.app.server import build_app, launch, parse_args

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="screenshots-"))
    port = free_port()
    flags = [flag for folder in args.checkpoints for flag in ("--checkpoints", folder)]
    flags += ["--no-demo"] if args.checkpoints else []
    app_args = parse_args(["--port", str(port), "--workdir", str(work / "app"), *flags])
    app_args.hub_repo = None
    demo = build_app(app_args, root=ROOT)
    launch(demo, app_args, prevent_thread_lock=True, quiet=True)
    began = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            url = f"http://127.0.0.1:{port}/"
            if args.only != "products":
                for width in args.widths:
                    shoot(browser, url, width, out, work)
            if args.only != "tabs":
                shoot_products(browser, url, out, demo.rdx_config.registry, demo.rdx_config.examples)
            if args.startup:
                demo.close()  # the measured app runs alone
                seconds = [startup_seconds(browser, flags, work) for _ in range(2)]
                print("python app.py to a usable page (first example clickable): "
                      + ", ".join(f"{s:.1f} s" for s in seconds) + " (first run, second run)")
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
