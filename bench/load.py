"""Load on the app: concurrent Inspect sessions over its API while a fine-tune runs in a browser page.

    python bench/load.py                          # 8 sessions x 10 Inspect requests, a 40-iteration fine-tune
    python bench/load.py --clients 4 --requests 5 --iterations 10 --timeout 600

Starts ``python app.py --host 127.0.0.1 --port <free> --workdir <temp>`` as a
subprocess (the shipped checkpoints/metal_plate is the model inspected), then:

- one Chromium page (Debian's /usr/bin/chromium through Playwright) starts a small
  fine-tune in the Fine-tune tab: the fine-tune event is not an API endpoint
  (``api_visibility="private"``, on purpose: it acts on the page's own files), so a
  browser drives it, as a visitor would; upload: 10 normal + 3 defective MPDD
  metal_plate images with masks (128 px), 64 px, variant ``full``;
- as soon as it is started, ``--clients`` ``gradio_client.Client`` sessions each send
  ``--requests`` Inspect requests, one after the other, through the app's public
  endpoint ``/inspect_files`` (one real MPDD metal_plate test image each);
- afterwards, isolation: a fresh API session and a fresh browser context must not
  list the fine-tune, the API session cannot inspect with it, and the fine-tune's
  files in the workdir are not served over HTTP (403/404).

Memory: the server process tree is sampled every 0.5 s (summed RSS), and its
peak resident size (VmHWM) is read from /proc. Traffic goes to 127.0.0.1 only
(the browser aborts any other request; telemetry is off). Everything is bounded
by ``--timeout`` (default 15 min): at the deadline the server is stopped and what
was measured is written. Results: bench/results/load.{md,json}, with the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# no telemetry from gradio_client (its analytics_enabled=False falls back to this variable), no Hub calls, no proxy
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
                     "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}.items():
    os.environ[_key] = _value

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from machine import machine_info, machine_line  # noqa: E402

MPDD = ROOT.parent / "shared" / "data" / "mpdd" / "metal_plate"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--no-proxy-server"]
ENDPOINT = "/inspect_files"
FINETUNE_NAME = "load-bench"
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 30) -> int:
    try:
        with LOCAL.open(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


# -- the server and its memory ---------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak summed RSS of the server's process tree, and the largest VmHWM (peak RSS) of one of its processes."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True, name="memory-sampler")
        self.pid, self.every = pid, every
        self.peak_rss_kib = self.peak_hwm_kib = 0
        self.processes = 1
        self._stop = threading.Event()

    def sample(self) -> None:
        tree = process_tree(self.pid)
        self.processes = max(self.processes, len(tree))
        self.peak_rss_kib = max(self.peak_rss_kib, sum(status_kib(p, "VmRSS") for p in tree))
        self.peak_hwm_kib = max([self.peak_hwm_kib] + [status_kib(p, "VmHWM") for p in tree])

    def run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self.sample()
        self._stop.set()


def start_server(port: int, workdir: Path, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--workdir", str(workdir)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy(),
    )


def wait_for_server(server: subprocess.Popen, url: str, deadline: float) -> float:
    began = time.perf_counter()
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with status {server.returncode} before it answered")
        try:
            if http_status(f"{url}gradio_api/info", timeout=5) == 200:
                return time.perf_counter() - began
        except OSError:
            pass
        time.sleep(1.0)
    raise TimeoutError("the app did not answer before the deadline")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)  # its own session/process group, started above
        server.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(timeout=20)


# -- inputs ------------------------------------------------------------------------------------------
def test_images() -> list[Path]:
    good = sorted((MPDD / "test" / "good").glob("*.png"))
    defect = sorted((MPDD / "test" / "defect").glob("*.png"))
    images = [p for pair in zip(good, defect) for p in pair]  # alternate normal and defective
    if not images:
        raise FileNotFoundError(f"no MPDD metal_plate test images under {MPDD}")
    return images


def finetune_upload(path: Path, normal: int = 10, defects: int = 3, size: int = 128) -> Path:
    """A zip of real MPDD metal_plate images: good/, defect/ and mask/ (as the Fine-tune tab documents)."""
    from PIL import Image

    def png(p: Path, mode: str = "RGB") -> bytes:
        buffer = io.BytesIO()
        Image.open(p).convert(mode).resize((size, size)).save(buffer, format="PNG")
        return buffer.getvalue()

    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted((MPDD / "train" / "good").glob("*.png"))[:normal]:
            zf.writestr(f"parts/good/{p.name}", png(p))
        for p in sorted((MPDD / "test" / "defect").glob("*.png"))[:defects]:
            zf.writestr(f"parts/defect/{p.name}", png(p))
            zf.writestr(f"parts/mask/{p.stem}_mask.png", png(MPDD / "ground_truth" / "defect" / f"{p.stem}_mask.png", "L"))
    return path


# -- the fine-tune, in a browser page ---------------------------------------------------------------
class BrowserFineTune(threading.Thread):
    """All Playwright calls happen in this thread (the sync API is bound to one thread)."""

    def __init__(self, url: str, upload: Path, iterations: int, deadline: float):
        super().__init__(daemon=True, name="browser-finetune")
        self.url, self.upload, self.iterations, self.deadline = url, upload, iterations, deadline
        self.started = threading.Event()
        self.result: dict = {"finished": False}
        self.blocked: list[str] = []

    def _remaining_ms(self) -> float:
        return max(1.0, (self.deadline - time.monotonic()) * 1000)

    def _guard(self, context) -> None:
        def route(r):
            host = urllib.parse.urlsplit(r.request.url).hostname
            if host in ("127.0.0.1", "localhost") or r.request.url.startswith(("data:", "blob:")):
                r.continue_()
            else:
                self.blocked.append(r.request.url)
                r.abort()

        context.route("**/*", route)

    def _options(self, page, selector: str) -> list[str]:
        page.locator(f"{selector} input").click()
        page.get_by_role("option").first.wait_for(timeout=self._remaining_ms())
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        return options

    def run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    self._finetune(browser)
                    self._other_visitor(browser)
                finally:
                    browser.close()
        except Exception as error:
            self.result["error"] = f"{type(error).__name__}: {error}"
            self.result["traceback"] = traceback.format_exc()
        finally:
            self.started.set()  # never leave the load waiting

    def _finetune(self, browser) -> None:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self._guard(context)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(self.url)
        page.wait_for_selector("#rdx-examples button.thumbnail-item")
        page.get_by_role("tab", name="Fine-tune").click()
        page.locator("#rdx-ft-normal input[type=file]").set_input_files(str(self.upload))
        iterations = page.locator("#rdx-ft-iterations input[type=number]")
        iterations.fill(str(self.iterations))
        iterations.press("Enter")
        page.locator("#rdx-ft-size input").click()
        page.get_by_role("option", name="64", exact=True).click()
        page.locator("#rdx-ft-name input, #rdx-ft-name textarea").first.fill(FINETUNE_NAME)
        page.wait_for_timeout(1000)  # the upload settles
        page.locator("#rdx-ft-start").click()
        self.result["t_start"] = time.perf_counter()
        self.started.set()
        status = ""
        while time.monotonic() < self.deadline:
            status = page.locator("#rdx-ft-status").inner_text()
            if any(word in status for word in ("Done in", "failed", "Cancelled", "refused")):
                break
            page.wait_for_timeout(500)
        self.result["t_end"] = time.perf_counter()
        self.result["status"] = " ".join(status.split())[:300]
        self.result["finished"] = "Done in" in status
        if not self.result["finished"]:
            return
        page.locator("#rdx-ft-metrics").filter(has_text="selectable").first.wait_for(timeout=self._remaining_ms())
        owned = [o for o in self._options(page, "#rdx-checkpoint") if FINETUNE_NAME in o]
        self.result["key"] = owned[0] if owned else None
        self.result["owner_lists_it"] = bool(owned)
        link = page.locator("#rdx-ft-download a").first
        self.result["download_href"] = link.get_attribute("href") if link.count() else None

    def _other_visitor(self, browser) -> None:
        """A second visitor's page: its checkpoint lists must not include the fine-tune."""
        if not self.result.get("finished"):
            return
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self._guard(context)
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(self.url)
            page.wait_for_selector("#rdx-examples button.thumbnail-item")
            page.locator("#rdx-checkpoint-info").filter(has_text="source:").first.wait_for()  # page-load events ran
            page.wait_for_timeout(500)
            checkpoint = self._options(page, "#rdx-checkpoint")
            page.get_by_role("tab", name="Fine-tune").click()
            base = self._options(page, "#rdx-ft-base")
            self.result["other_page_options"] = checkpoint + base
            self.result["other_page_lists_it"] = any(FINETUNE_NAME in o for o in checkpoint + base)
        finally:
            context.close()


# -- the Inspect load, through gradio_client ---------------------------------------------------------
def new_client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, analytics_enabled=False)


def inspect_parameters(client) -> tuple[list[dict], list[str], str]:
    """The public Inspect endpoint's parameters, the checkpoint choices it offers, and the default checkpoint."""
    api = client.view_api(print_info=False, return_format="dict")
    endpoints = api["named_endpoints"]
    if ENDPOINT not in endpoints:
        raise RuntimeError(f"no {ENDPOINT} endpoint; the app offers {sorted(endpoints)}")
    parameters = endpoints[ENDPOINT]["parameters"]
    dropdown = next(p for p in parameters if p.get("component") == "Dropdown")
    choices = list(dropdown.get("type", {}).get("enum") or [])
    default = dropdown.get("parameter_default") if dropdown.get("parameter_has_default") else None
    return parameters, choices, default if default in choices else (choices[0] if choices else None)


def outcome(result) -> tuple[bool, str]:
    """(answered with a verdict, the page's message) from the endpoint's outputs (the message is the last)."""
    texts = [r for r in result if isinstance(r, str)] if isinstance(result, (list, tuple)) else []
    message = result[-1] if isinstance(result, (list, tuple)) and isinstance(result[-1], str) else ""
    verdict = any("calibrated score" in t for t in texts)
    return verdict and not message.strip(), " ".join(message.split())[:200]


def session_load(index: int, url: str, key: str, images: list[Path], requests: int, deadline: float) -> dict:
    from gradio_client import handle_file

    rows, began = [], time.perf_counter()
    try:
        client = new_client(url)
    except Exception as error:
        return {"session": index, "rows": [], "error": f"connect: {type(error).__name__}: {error}"}
    connect_s = time.perf_counter() - began
    for j in range(requests):
        image = images[(index * requests + j) % len(images)]
        t0 = time.perf_counter()
        row = {"session": index, "request": j, "image": image.name, "t_submit": t0}
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("global deadline")
            job = client.submit(key, [handle_file(str(image))], 0.5, api_name=ENDPOINT)
            ok, message = outcome(job.result(timeout=remaining))
            row.update(ok=ok, message=message)
        except Exception as error:
            row.update(ok=False, message=f"{type(error).__name__}: {error}"[:200])
        row["t_done"] = time.perf_counter()
        row["seconds"] = row["t_done"] - t0
        rows.append(row)
    try:
        client.close()
    except Exception:
        pass
    return {"session": index, "connect_seconds": connect_s, "rows": rows}


# -- isolation, from another session -----------------------------------------------------------------
def isolation(url: str, workdir: Path, finetune: dict, deadline: float) -> dict:
    from gradio_client import handle_file

    key, out = finetune.get("key"), {}
    client = new_client(url)  # a fresh API session
    _, choices, _ = inspect_parameters(client)
    out["api_session_lists_it"] = any(FINETUNE_NAME in c for c in choices)
    with LOCAL.open(f"{url}config", timeout=30) as response:
        out["served_config_mentions_it"] = FINETUNE_NAME in response.read().decode()
    if key:
        try:
            job = client.submit(key, [handle_file(str(test_images()[0]))], 0.5, api_name=ENDPOINT)
            ok, message = outcome(job.result(timeout=max(1.0, deadline - time.monotonic())))
            out["api_session_inspect_with_it"] = "answered (LEAK)" if ok else f"refused: {message}"
        except Exception as error:
            out["api_session_inspect_with_it"] = f"refused: {type(error).__name__}: {' '.join(str(error).split())[:160]}"
    try:
        client.close()
    except Exception:
        pass
    files = [p for p in (workdir / "sessions").rglob("*") if p.is_file()
             and (p.name in ("model.safetensors", "config.json") or p.suffix in (".zip", ".png"))]
    statuses = {}
    for path in sorted(files, key=lambda p: (p.suffix != ".safetensors", str(p)))[:8]:
        statuses[str(path.relative_to(workdir))] = http_status(f"{url}gradio_api/file={urllib.parse.quote(str(path))}")
    out["workdir_files_over_http"] = statuses
    out["workdir_files_refused"] = bool(statuses) and all(s in (403, 404) for s in statuses.values())
    href = finetune.get("download_href")
    if href:  # the owner's download link: a copy in gradio's upload cache under a content hash only that page was given
        out["owner_download_link_status"] = http_status(urllib.parse.urljoin(url, href))
    return out


# -- report ------------------------------------------------------------------------------------------
def summarise(rows: list[dict], finetune: dict) -> dict:
    answered = [r for r in rows if r["ok"]]
    latencies = [r["seconds"] for r in answered]
    summary = {"requests": len(rows), "answered": len(answered), "failed": len(rows) - len(answered),
               "median_s": round(statistics.median(latencies), 3) if latencies else None,
               "p90_s": round(sorted(latencies)[int(0.9 * (len(latencies) - 1))], 3) if latencies else None,
               "max_s": round(max(latencies), 3) if latencies else None,
               "failures": sorted({r["message"] for r in rows if not r["ok"]})[:10]}
    if rows:
        first, last = min(r["t_submit"] for r in rows), max(r["t_done"] for r in rows)
        summary["load_seconds"] = round(last - first, 1)
        summary["throughput_per_s"] = round(len(answered) / max(last - first, 1e-9), 3)
        if "t_start" in finetune:
            end = finetune.get("t_end", last)
            overlap = max(0.0, min(end, last) - max(finetune["t_start"], first))
            summary["overlap_with_finetune_s"] = round(overlap, 1)
            during = [r["seconds"] for r in answered if finetune["t_start"] <= r["t_submit"] <= end]
            summary["answered_while_finetuning"] = len(during)
            summary["median_while_finetuning_s"] = round(statistics.median(during), 3) if during else None
    return summary


def markdown(result: dict) -> str:
    s, ft, iso, mem = result["inspect"], result["finetune"], result.get("isolation", {}), result["server_memory"]
    a = result["settings"]
    yes = {True: "yes", False: "no", None: "n/a"}
    files = ", ".join(f"{Path(k).name}: {v}" for k, v in iso.get("workdir_files_over_http", {}).items())
    lines = [
        "# App under load: concurrent Inspect sessions while a fine-tune runs",
        "",
        f"Machine: {result['machine_line']}; load average before the run {result['load_before']}.",
        f"Command: `{result['command']}`. Server: `python app.py --host 127.0.0.1 --port <free> --workdir <temp>` "
        f"(shipped checkpoint `{result['checkpoint']}`, queue concurrency 2 for Inspect, 1 for fine-tunes). "
        f"{a['clients']} `gradio_client` sessions x {a['requests']} requests to `{ENDPOINT}` (one MPDD metal_plate "
        f"test image each, sent one after the other per session), while one Chromium page fine-tunes "
        f"(`full`, 64 px, {a['iterations']} iterations, 10 normal + 3 defective uploads; the fine-tune event is not "
        "an API endpoint, so a browser drives it).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| Inspect requests answered / failed | {s['answered']} / {s['failed']} (of {s['requests']}) |",
        f"| latency median / p90 / max (s) | {s['median_s']} / {s['p90_s']} / {s['max_s']} |",
        f"| median while the fine-tune ran (s, n) | {s.get('median_while_finetuning_s')} ({s.get('answered_while_finetuning')}) |",
        f"| load duration (s), throughput (answers/s) | {s.get('load_seconds')}, {s.get('throughput_per_s')} |",
        f"| overlap of load and fine-tune (s) | {s.get('overlap_with_finetune_s')} |",
        f"| peak server memory: summed RSS of its process tree / VmHWM (MiB) | "
        f"{mem['peak_rss_mib']} / {mem['peak_vmhwm_mib']} ({mem['processes']} process(es)) |",
        f"| fine-tune finished | {yes[ft.get('finished')]} ({ft.get('seconds')} s; {ft.get('status', ft.get('error', ''))}) |",
        f"| owner's page lists the fine-tune | {yes[ft.get('owner_lists_it')]} |",
        f"| another browser page lists it | {yes[ft.get('other_page_lists_it')]} |",
        f"| another API session lists it (endpoint choices / served config) | "
        f"{yes[iso.get('api_session_lists_it')]} / {yes[iso.get('served_config_mentions_it')]} |",
        f"| another API session inspects with it | {iso.get('api_session_inspect_with_it', 'n/a')} |",
        f"| its workdir files over HTTP refused | {yes[iso.get('workdir_files_refused')]} "
        f"({files}) |",
        f"| owner's download link (capability URL in gradio's cache) | HTTP {iso.get('owner_download_link_status', 'n/a')} |",
        f"| requests the browser tried outside 127.0.0.1 (aborted) | {len(result.get('blocked_requests', []))} |",
        "",
    ]
    if s["failures"]:
        lines += ["Failures: " + "; ".join(f"`{m}`" for m in s["failures"]), ""]
    if result.get("errors"):
        lines += ["Errors: " + "; ".join(result["errors"]), ""]
    lines.append(f"Server start to first answer of `/gradio_api/info`: {result.get('server_ready_s')} s; "
                 f"wall time of the whole benchmark {result.get('wall_s')} s.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=40, help="fine-tune iterations (64 px, full)")
    parser.add_argument("--timeout", type=float, default=900.0, help="global limit in seconds (default 15 min)")
    parser.add_argument("--results", default=str(HERE / "results"), help="where load.{md,json} go")
    args = parser.parse_args(argv)

    wall = time.perf_counter()
    deadline = time.monotonic() + args.timeout
    load_before = round(os.getloadavg()[0], 2)
    scratch = Path(tempfile.mkdtemp(prefix="rdexpert-load-"))
    workdir, port = scratch / "workdir", free_port()
    url = f"http://127.0.0.1:{port}/"
    result = {"machine": machine_info(), "machine_line": machine_line(), "load_before": load_before,
              "command": " ".join(["python bench/load.py", *(sys.argv[1:] if argv is None else argv)]),
              "settings": vars(args), "errors": []}
    server = start_server(port, workdir, scratch / "server.log")
    sampler = MemorySampler(server.pid)
    sampler.start()
    watchdog = threading.Timer(args.timeout, lambda: stop_server(server))  # the global limit: nothing outlives it
    watchdog.daemon = True
    watchdog.start()
    browser, rows = None, []
    try:
        result["server_ready_s"] = round(wait_for_server(server, url, deadline), 1)
        probe = new_client(url)
        parameters, choices, key = inspect_parameters(probe)
        try:
            probe.close()
        except Exception:
            pass
        result["endpoint"] = {"name": ENDPOINT, "parameters": [p.get("parameter_name") for p in parameters],
                              "checkpoint_choices": choices}
        result["checkpoint"] = key
        if not key:
            raise RuntimeError("the app offers no checkpoint to inspect with")
        upload = finetune_upload(scratch / "parts.zip")
        browser = BrowserFineTune(url, upload, args.iterations, deadline)
        browser.start()
        browser.started.wait(timeout=max(1.0, deadline - time.monotonic()))
        if "error" in browser.result:
            result["errors"].append(f"fine-tune page: {browser.result['error']}")
        images = test_images()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            sessions = list(pool.map(lambda i: session_load(i, url, key, images, args.requests, deadline),
                                     range(args.clients)))
        for session in sessions:
            rows += session["rows"]
            if session.get("error"):
                result["errors"].append(f"session {session['session']}: {session['error']}")
        browser.join(timeout=max(1.0, deadline - time.monotonic()))
        if "error" in browser.result:
            result["errors"].append(f"fine-tune page: {browser.result['error']}")
        if browser.result.get("finished"):
            result["isolation"] = isolation(url, workdir, browser.result, deadline)
    except Exception as error:
        result["errors"].append(f"{type(error).__name__}: {error}")
        traceback.print_exc()
    finally:
        watchdog.cancel()
        sampler.stop()
        stop_server(server)
    ft = dict(browser.result) if browser is not None else {"finished": False}
    if "t_start" in ft and "t_end" in ft:
        ft["seconds"] = round(ft["t_end"] - ft["t_start"], 1)
    ft.pop("traceback", None)
    result["finetune"] = {k: v for k, v in ft.items() if not k.startswith("t_")}
    result["blocked_requests"] = browser.blocked[:20] if browser is not None else []
    result["inspect"] = summarise(rows, ft)
    result["server_memory"] = {"peak_rss_mib": round(sampler.peak_rss_kib / 1024, 1),
                               "peak_vmhwm_mib": round(sampler.peak_hwm_kib / 1024, 1),
                               "processes": sampler.processes}
    result["rows"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if not k.startswith("t_")}
                      for r in rows]
    result["wall_s"] = round(time.perf_counter() - wall, 1)
    result["server_log_tail"] = (scratch / "server.log").read_text(errors="replace")[-3000:]
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    (results / "load.md").write_text(text)
    (results / "load.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(text)
    shutil.rmtree(scratch, ignore_errors=True)
    iso = result.get("isolation", {})
    leaked = iso.get("api_session_lists_it") or ft.get("other_page_lists_it") or not iso.get("workdir_files_refused", True) \
        or str(iso.get("api_session_inspect_with_it", "")).startswith("answered")
    return 1 if result["errors"] or leaked or result["inspect"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
