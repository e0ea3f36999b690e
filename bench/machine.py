"""Describe the machine a benchmark ran on, stored next to every result."""

from __future__ import annotations

import os
import platform

import torch


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def machine_line() -> str:
    m = machine_info()
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ", no GPU"
    return f"{m['cpu']}, {m['cores']} cores, {m.get('memory_gib', '?')} GiB{gpu}; torch {m['torch']}"


def save_results(stem: str, text: str, **payload) -> None:
    """Print the table and store it as bench/results/<stem>.md, with ``payload`` and the machine in <stem>.json."""
    import json
    from pathlib import Path

    print(text)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"{stem}.md").write_text(text)
    (results / f"{stem}.json").write_text(json.dumps({**payload, "machine": machine_info()}, indent=1))
