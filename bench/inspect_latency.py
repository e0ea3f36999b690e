"""Browser latency of one Inspect request: from the person's action to the verdict on screen.

    python bench/inspect_latency.py              # 12 timed uploads and 12 example clicks per backend, demo checkpoint
    python bench/inspect_latency.py --backends torch
    python bench/inspect_latency.py --backends torch --against a6dad1c --rounds 2   # this tree vs a commit

The app runs in this process on a free localhost port with the shipped checkpoints; Debian's Chromium
(through Playwright) does what a person does: upload a file (each time under a new name, so no cache
answers) and press Inspect, or click an example. Timed: from the action to the moment the page shows
that image's name in the Inspect info panel (the verdict, maps and info arrive in one update). The page is
reloaded before each upload, untimed, so the upload box holds one file.
Results: bench/results/inspect_latency.{md,json}, with the machine.

``--against REV`` compares this tree with commit REV side by side in one run: REV is checked out in a temporary
git worktree, and each round measures REV's app (its code, checkpoints and examples) and then this tree's, each
in a fresh process, so machine load hits both alike; the table gives each tree's medians over all rounds and
their ratio. Results: bench/results/inspect_latency_vs_<REV>.{md,json}.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from load import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from machine import machine_line, save_results  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(backend: str, repeats: int, work: Path, root: Path = ROOT) -> dict[str, list[float]]:
    """Seconds per action with the app's Predictor on ``backend`` (a fresh app on a free port), the app of the
    tree at ``root`` (its rdexpert package and checkpoints; run in a fresh process, so that package is imported)."""
    sys.path.insert(0, str(root))
    from playwright.sync_api import sync_playwright

    import rdexpert
    from rdexpert.app.server import build_app, launch, parse_args

    assert Path(rdexpert.__file__).resolve().is_relative_to(root.resolve()), (rdexpert.__file__, root)
    port = free_port()
    app_args = parse_args(["--port", str(port), "--workdir", str(work / "app"), "--backend", backend])
    app_args.hub_repo = None
    demo = build_app(app_args, root=root)
    launch(demo, app_args, prevent_thread_lock=True, quiet=True)
    sources = [ROOT / "assets" / "examples" / "metal_plate" / "good_test_00003.png",  # the same files for any root
               ROOT / "assets" / "examples" / "metal_plate" / "defect_train_00066.png"]
    timings = {"upload + Inspect": [], "example click": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            examples = page.locator("#rdx-examples button.thumbnail-item")
            examples.first.wait_for()
            info = page.locator("#rdx-inspect-info")
            for i in range(-1, repeats):  # -1: the warm-up (model load, ONNX export, first forward), not timed
                name = f"upload_{backend}_{i + 1:02d}"
                path = work / f"{name}.png"
                shutil.copy(sources[i % 2], path)
                if i >= 0:  # a fresh page (not timed): the upload box would otherwise keep the previous file
                    page.reload()
                    examples.first.wait_for()
                began = time.perf_counter()
                page.locator("#rdx-files input[type=file]").set_input_files(str(path))
                page.locator("#rdx-files").filter(has_text=name).first.wait_for()
                page.locator("#rdx-run").click()
                info.filter(has_text=name).first.wait_for()
                if i >= 0:
                    timings["upload + Inspect"].append(time.perf_counter() - began)
            last = examples.count() - 1
            for i in range(repeats):
                k = (i % 2) * last  # alternate the first and the last example, so every click changes the page
                before = info.inner_text()
                began = time.perf_counter()
                examples.nth(k).click()
                page.wait_for_function(
                    "(before) => { const el = document.querySelector('#rdx-inspect-info');"
                    " return el && el.innerText.trim() !== '' && el.innerText !== before; }", arg=before)
                timings["example click"].append(time.perf_counter() - began)
            browser.close()
    finally:
        demo.close()
    return timings


def measure_apart(backend: str, repeats: int, work: Path, root: Path = ROOT) -> dict[str, list[float]]:
    """:func:`measure` in a fresh process: a second app in the same process answered uploads ~0.05 s slower."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, backend, repeats, work, root).result()


def percentile_row(label: str, values: list[float]) -> str:
    """``| label | n | median | p90 | max |`` of seconds."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"| {label} | {len(values)} | {statistics.median(values):.3f} | {p90:.3f} | {max(values):.3f} |"


def compare(backend: str, repeats: int, rounds: int, work: Path, rev: str) -> None:
    """This tree against commit ``rev``, round after round (``rev`` first in each), in one run."""
    base = work / "against"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), rev], check=True,
                   capture_output=True)
    try:
        commit = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        trees = {commit: base, "this tree": ROOT}
        results = {name: {"upload + Inspect": [], "example click": []} for name in trees}
        for _ in range(rounds):
            for name, root in trees.items():
                for action, values in measure_apart(backend, repeats, work, root).items():
                    results[name][action] += values
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    lines = [
        f"# Inspect latency in the browser: this tree vs {commit}", "",
        f"Machine: {machine_line()}; server and Chromium on the same 2 cores.",
        f"Command: `python bench/inspect_latency.py {' '.join(sys.argv[1:])}`. Backend `{backend}`; {rounds} "
        f"round(s), each measuring {commit}'s app and then this tree's, each app in a fresh process; the same "
        "uploaded files for both. Each tree opens on its own first checkpoint.", "",
        "| tree | action | n | median s | p90 s | max s |", "|---|---|---|---|---|---|",
    ]
    for name, timings in results.items():
        lines += [percentile_row(f"{name} | {action}", values) for action, values in timings.items()]
    lines += ["", "| action | median ratio (this tree / " + commit + ") |", "|---|---|"]
    for action in results[commit]:
        ratio = statistics.median(results["this tree"][action]) / statistics.median(results[commit][action])
        lines.append(f"| {action} | {ratio:.2f} |")
    save_results(f"inspect_latency_vs_{rev}", "\n".join(lines) + "\n", timings=results, against=commit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"],
                        help="the app's Predictor backend (python app.py --backend), one app after the other")
    parser.add_argument("--against", metavar="REV", help="compare with this commit (the first backend only)")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: rounds of both trees")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="inspect-latency-"))
    os.environ["RDEXPERT_CACHE"] = str(work / "cache")  # the ONNX export happens in the untimed warm-up
    try:
        if args.against:
            compare(args.backends[0], args.repeats, args.rounds, work, args.against)
            return
        results = {backend: measure_apart(backend, args.repeats, work) for backend in args.backends}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Inspect latency in the browser (shipped demo checkpoint)", "",
        f"Machine: {machine_line()}; server and Chromium on the same 2 cores.",
        f"Command: `python bench/inspect_latency.py {' '.join(sys.argv[1:])}`".rstrip() + ". Backend: the app's "
        "`--backend` (the Predictor's: PyTorch, or ONNX Runtime on the CPU), one app after the other, each in its "
        "own process.", "",
        "| backend | action | n | median s | p90 s | max s |", "|---|---|---|---|---|---|",
    ]
    for backend, timings in results.items():
        lines += [percentile_row(f"{backend} | {action}", values) for action, values in timings.items()]
    save_results("inspect_latency", "\n".join(lines) + "\n", timings=results)


if __name__ == "__main__":
    main()
