"""Constants and plain helpers the app's test modules share (``from .support import ...``).

Why this module exists: fixtures live in ``conftest.py`` and are taken by name;
constants and functions are imported, from here, never from another test module
(the same rule as ``tests/helpers.py``, for what only the app's tests need).
Nothing here imports gradio at import time: the test modules skip without it.
"""

from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import MPDD
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "checkpoints" / "metal_plate"
EXAMPLES = ROOT / "assets" / "examples" / "metal_plate"  # the demo product's shipped examples
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# each app test module: ``pytestmark = GRADIO_WARNINGS``
GRADIO_WARNINGS = [
    # gradio's own queue code trips pandas 3 deprecation warnings; not ours to fix
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    # gradio's track_tqdm patch closes a tqdm it did not set up (Evaluate's progress); not ours to fix
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function tqdm.__del__:pytest.PytestUnraisableExceptionWarning"
    ),
]


# -- files to upload -----------------------------------------------------------------------------
def png_bytes(seed: int = 0, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_files(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def mpdd_zip(path: Path, normal: int = 5, defects: int = 2, size: int = 96) -> Path:
    """A small upload made of real MPDD metal_plate images: good/, defect/ and mask/ folders."""
    cat = MPDD / "metal_plate"

    def png(p: Path, mode: str = "RGB") -> bytes:
        buffer = io.BytesIO()
        Image.open(p).convert(mode).resize((size, size)).save(buffer, format="PNG")
        return buffer.getvalue()

    entries = {f"parts/good/{p.name}": png(p) for p in sorted((cat / "train" / "good").glob("*.png"))[:normal]}
    for p in sorted((cat / "test" / "defect").glob("*.png"))[:defects]:
        entries[f"parts/defect/{p.name}"] = png(p)
        entries[f"parts/mask/{p.stem}_mask.png"] = png(cat / "ground_truth" / "defect" / f"{p.stem}_mask.png", "L")
    return zip_files(path, entries)


def jpeg_bytes(size: int = 256) -> bytes:
    """A real JPEG: an MPDD metal_plate training image, re-encoded."""
    source = sorted((MPDD / "metal_plate" / "train" / "good").glob("*.png"))[0]
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").resize((size, size)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def skip_without_mpdd():
    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"shared MPDD data not found at {MPDD}")


# -- what gradio hands a handler, and what a handler returned ------------------------------------
def select_event(index):
    """The event gradio passes to a ``.select`` handler."""
    import gradio as gr

    return gr.SelectData(None, {"index": index, "value": None})


def session_request(session: str):
    """The request gradio hands a handler, for the browser session ``session``."""
    import gradio as gr

    return gr.Request(session_hash=session)


def page_text(outputs) -> str:
    """Every string a handler returned (what the page would show), as one text."""
    return " ".join(str(o) for o in outputs if isinstance(o, str))


def without_data(monkeypatch, registry, tmp_path) -> str:
    """The shipped checkpoint, with its dataset root pointed at a folder that does not exist (a Space, a clone)."""
    if not (DEMO / "test" / "metrics.json").is_file():
        pytest.skip("the shipped demo checkpoint with its test report is not here")
    key = next(k for k in registry.choices()
               if registry.get(k).source == "shipped" and registry.get(k).folder == DEMO)  # the demo product's
    monkeypatch.setitem(registry.get(key).config["dataset"], "root", str(tmp_path / "no_such_data"))
    return key


def stored_verdict(folder: Path, image: str, margin: float = 0.1) -> str | None:
    """"ANOMALOUS" or "NORMAL": what checkpoint ``folder``'s stored test report (test/scores.csv, by ``image``, e.g.
    "defect/train_00066.png") and its calibration say of a test image; None without them, or when the calibrated
    score is within ``margin`` of the threshold 0.5 (an example resized for the page may land either side)."""
    import csv
    import json

    scores, config = folder / "test" / "scores.csv", folder / "config.json"
    if not (scores.is_file() and config.is_file()):
        return None
    calibration = json.loads(config.read_text()).get("calibration") or {}
    low, threshold = calibration.get("low"), calibration.get("threshold")
    row = next((r for r in csv.DictReader(scores.open()) if r["image"] == image), None)
    if row is None or low is None or threshold is None or threshold <= low:
        return None
    normalized = 0.5 * (float(row["score"]) - low) / (threshold - low)
    if abs(normalized - 0.5) < margin:
        return None
    return "ANOMALOUS" if normalized >= 0.5 else "NORMAL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what a person sees in the browser (tests/app/test_browser_widths.py) ----------------------------
WIDTHS = {"desktop": (1400, 900), "phone": (400, 850)}

# what does not fit the page: elements sticking out of it (unless a box that scrolls or clips them holds them),
# texts squeezed narrower than they need (a paragraph in a 20-px column), numbers broken over lines in tables
LAYOUT_JS = """
() => {
  const W = document.documentElement.clientWidth;
  const shown = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  const held = (e) => {
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX === 'visible') continue;
      const r = a.getBoundingClientRect();
      if (r.right <= W + 1 && r.left >= -1) return true;
    }
    return false;
  };
  const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + (typeof e.className === 'string' && e.className.trim() ? '.' + e.className.trim().split(/\\s+/)[0] : '');
  const wide = [], squeezed = [], broken = [];
  for (const e of document.body.querySelectorAll('*')) {
    if (!shown(e) || e.closest('#js-plotly-tester')) continue;  // plotly measures text far off the page
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > 0 && (r.right > W + 1 || r.left < -1) && !held(e))
      wide.push(name(e) + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
  }
  for (const e of document.body.querySelectorAll('.prose, .rdx-message, .rdx-verdict, p, li')) {
    if (!shown(e)) continue;
    const text = e.innerText.trim(), r = e.getBoundingClientRect();
    if (text.length > 40 && r.width < Math.min(240, W * 0.6))
      squeezed.push(name(e) + ' ' + Math.round(r.width) + ' px: ' + text.slice(0, 40));
  }
  for (const e of document.body.querySelectorAll('td, th')) {
    const text = e.innerText.trim();
    if (!shown(e) || !/^[-+]?[0-9][0-9.,%]*$/.test(text)) continue;
    const range = document.createRange();
    range.selectNodeContents(e);
    if (new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size > 1) broken.push(name(e) + ' ' + text);
  }
  return {wide, squeezed, broken};
}
"""

# where an element is in the window: [top, bottom, window height]
BOX_JS = """(e) => { const r = e.getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight]; }"""

# the cap height of "A" and of "N" in an element's own font (bold "A" from another face read "ᴀNOMᴀLOUS")
CAPS_JS = """
async (e) => {
  const s = getComputedStyle(e), font = `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
  await document.fonts.load(font, 'AN');
  const c = document.createElement('canvas').getContext('2d');
  c.font = font;
  return [c.measureText('A').actualBoundingBoxAscent, c.measureText('N').actualBoundingBoxAscent];
}
"""


def pick_checkpoint(page, words: str) -> None:
    """Choose the first checkpoint whose name holds ``words`` in the picker; wait until it is described."""
    page.locator("#rdx-checkpoint input").click()
    page.get_by_role("option").filter(has_text=words).first.click()
    page.locator("#rdx-checkpoint-info").filter(has_text=words).first.wait_for()


DEMO_CHOICE = "metal_plate · full"  # the demo product's default model (the tiny one without checkpoints/)


def pick_demo(page) -> None:
    """The demo product's default model, with its examples (the page opens on the first product, which may be
    another); the checkpoint-dependent events have run when the examples are the demo product's."""
    page.locator("#rdx-checkpoint-info").filter(has_text="source:").wait_for()  # the page-load events ran
    pick_checkpoint(page, DEMO_CHOICE)
    page.locator("#rdx-examples").filter(has_text="metal_plate test images").wait_for()


def layout_problems(page) -> dict:
    """:data:`LAYOUT_JS` on the page: {"wide": [...], "squeezed": [...], "broken": [...]}, each empty when fine."""
    return page.evaluate(LAYOUT_JS)


def assert_in_view(page, selector: str) -> None:
    """The answer ``selector`` (a verdict, a message, a progress bar) begins inside the window, with room below."""
    top, bottom, height = page.locator(selector).first.evaluate(BOX_JS)
    assert 0 <= top <= height - 60, f"{selector} is at {top:.0f}..{bottom:.0f} px in a {height}-px window"
