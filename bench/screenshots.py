"""Screenshots of every tab of the app at two widths, as a person sees them right after the tab's main action.

    python bench/screenshots.py                       # into assets/screenshots/
    python bench/screenshots.py --out /tmp/shots --widths desktop

The app runs in this process on a free localhost port with the shipped checkpoints (and the MPDD data at
../shared/data/mpdd when it is there, for Evaluate and the fine-tune upload); Debian's Chromium (through
Playwright) does, at 1400 x 900 (``desktop``) and at 400 x 850 (``phone``), in a fresh browser context each:

- Inspect: click a defective example; the verdict and maps;
- Ablations: choose reference expert, gate open, then click the same example; the walkthrough's top;
- Fine-tune: upload 8 normal and 2 defective MPDD images (a zip) and fine-tune a tiny model (64 px, a few
  iterations); the status, the plain-words outcome and the download;
- Evaluate: evaluate the selected (demo) checkpoint; the summary and the plots.

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


def shoot(browser, url: str, width: str, out: Path, work: Path) -> list[Path]:
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h})
    page = context.new_page()
    page.set_default_timeout(300_000)
    page.goto(url)
    page.wait_for_selector("#rdx-examples button.thumbnail-item")
    wait_text(page, "#rdx-checkpoint-info", "source:")
    shots = []

    page.locator("#rdx-examples button.thumbnail-item").nth(3).click()  # a defective example
    wait_text(page, "#rdx-verdict", "calibrated score")
    shots.append(save(page, out, f"inspect_{width}"))

    page.get_by_role("tab", name="Ablations").click()
    page.locator("#rdx-abl-reference label").filter(has_text="expert").click()
    page.locator("#rdx-abl-gate label").filter(has_text="open").click()
    page.locator("#rdx-abl-examples button.thumbnail-item").nth(3).click()
    wait_text(page, "#rdx-abl-custom-text", "expert · open")
    wait_text(page, "#rdx-abl-variants-text", "Stored test metrics")
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
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from rdexpert.app.server import build_app, launch, parse_args

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="screenshots-"))
    port = free_port()
    app_args = parse_args(["--port", str(port), "--workdir", str(work / "app")])
    app_args.hub_repo = None
    demo = build_app(app_args, root=ROOT)
    launch(demo, app_args, prevent_thread_lock=True, quiet=True)
    began = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for width in args.widths:
                shoot(browser, f"http://127.0.0.1:{port}/", width, out, work)
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
