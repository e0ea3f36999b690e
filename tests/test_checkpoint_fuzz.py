"""Fuzzing the checkpoint loader: thousands of tampered config.json and model.safetensors files.

A checkpoint may come from anywhere, so whatever its files hold, ``load_checkpoint`` must end in one of two ways:
a loaded model, or one CheckpointError line naming the file; and memory stays bounded (no tampered size makes it
allocate gigabytes). The seed is the tiny checkpoint of conftest.py; a seeded generator (``hypothesis`` is not a
dependency) changes types, puts in huge, negative and non-finite numbers, strings, lists and nested junk, deletes
keys, adds unknown ones, truncates and garbles the JSON text, and truncates, garbles and rewrites the weights file
(other shapes, dtypes, names; with and without a matching ``weights_sha256``).

The cases run in a child process (this file run as a script), so that its peak resident memory measures the
fuzzing alone and not the rest of the test session: Linux's high-water mark (``VmHWM``, reset after one ordinary
load of the seed through ``/proc/self/clear_refs``), or ``ru_maxrss`` elsewhere (which an exec inherits from the
parent, so it can only over-state the growth).

Only what load_checkpoint reads after ``read_config`` decides its outcome once the config is valid: the ``model``
section, the ``backbone`` facts, ``input.image_size``, ``weights_sha256`` and the weights file (``backbone.pretrained``
too, but the fuzzing passes ``pretrained_expert=False``). A valid config whose those
parts were already loaded (another calibration text, say) is checked with ``read_config`` and the consumers of the
other sections, and reuses that outcome instead of building the same model again: so the test stays in seconds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path

SEED = 1234
CONFIG_CASES = 2500
WEIGHT_CASES = 120
MAX_PEAK_GROWTH = 512 * 2**20  # resident memory the fuzzing may add above one ordinary load of the seed
CHILD_TIMEOUT_S = 240


def test_tampered_checkpoints_load_or_fail_with_one_checkpoint_error(tiny_checkpoint, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, str(tiny_checkpoint), str(tmp_path), str(SEED)],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)  # shown with pytest -s: cases, outcomes, seconds, peak memory
    assert result["failures"] == []
    assert result["cases"] == CONFIG_CASES + WEIGHT_CASES
    # both outcomes happen, and most tampering is refused
    assert result["loaded"] >= 10 and result["refused"] >= CONFIG_CASES // 2
    assert result["peak_growth_bytes"] < MAX_PEAK_GROWTH, result


# -- junk ------------------------------------------------------------------------------------------------------
INTS = [0, -1, 1, 2, 3, 6, 31, 32, 36, 37, 64, 65, 2048, 2049, 20000, 100000, 2**31, 2**63, -2**63, 10**30]
FLOATS = [0.0, -0.0, 0.5, 1.5, 4.0, 64.0, 64.5, 1e-300, 1e308, -1e308, 1e6, 1e7, math.nan, math.inf, -math.inf]
STRINGS = ["", "3", "x", "full", "rd", "teacher", "expert", "RGB", "pad", "squash", "fp32", "bf16", "reflect",
           "resnet18", "wide_resnet50_2", "tf_efficientnet_lite0", "vit_base_patch16_224", "no_such_net",
           "hf-hub:evil/model", "../../etc/passwd", "rdexpert-checkpoint", "model.safetensors", "ood.safetensors",
           "\n\x00\x1b[31m", "0" * 64, "é" * 10, "a" * 70_000]


def deep(depth: int):
    value = 0
    for _ in range(depth):
        value = [value]
    return value


def junk(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(INTS)
    if kind == 1:
        return rng.choice(FLOATS)
    if kind in (2, 3):
        return rng.choice(STRINGS)
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.choice([[], {}, [1, 2], [3, 4, 6], [0.5, 0.5, 0.5], ["3", "4", "6"], [24, 40, 112], [4, 8, 16]])
    if kind == 6:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 7:
        return {rng.choice(STRINGS[:20] + ["threshold", "low", "image_size"]): junk(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if kind == 8:
        return deep(rng.choice([5, 31, 40, 200]))
    return rng.choice([[0] * 5000, {str(i): i for i in range(500)}, list(range(100))])


def nodes(value, path=()):
    """Every (path, value) inside a JSON value."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from nodes(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nodes(item, path + (index,))


def parent_of(config, path):
    target = config
    for step in path[:-1]:
        target = target[step]
    return target


def mutate_once(rng: random.Random, config: dict) -> str:
    """Change one thing in ``config`` (in place); returns what was done."""
    section = rng.choice(list(config))
    candidates = list(nodes(config[section], (section,)))
    path, value = rng.choice(candidates)
    op = rng.randrange(7)
    if op == 0 or len(path) == 0:
        new = junk(rng)
    elif op == 1:  # the same value as another type
        new = (str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else
               [value] if isinstance(value, (str, bool)) or value is None else
               {str(i): v for i, v in enumerate(value)} if isinstance(value, list) else
               list(value.values()))
    elif op == 2 and isinstance(value, (int, float)) and not isinstance(value, bool):
        new = rng.choice([value * 10 ** rng.randrange(1, 20), -value, value + 1, value - 1, 2**63, -1, 0,
                          math.nan, math.inf, 1e308, value * 1.5])
    elif op == 3 and len(path) >= 1:  # delete
        parent = parent_of(config, path)
        del parent[path[-1]]
        return f"delete {path}"
    elif op == 4 and isinstance(value, dict):  # an unknown key
        key = rng.choice(["extra", "x", "threshold", "__proto__", "model", "a" * 300, "é"])
        value[key] = junk(rng)
        return f"add {path}.{key}"
    elif op == 5 and isinstance(value, list):
        value.append(junk(rng)) if rng.random() < 0.5 or not value else value.pop()
        return f"resize {path}"
    elif op == 6:  # an unknown top-level section
        config[rng.choice(["future_section", "notes", "x" * 40])] = junk(rng)
        return "add top-level section"
    else:
        new = junk(rng)
    if len(path) == 1:
        config[path[0]] = new
    else:
        parent_of(config, path)[path[-1]] = new
    return f"set {path} = {json.dumps(new, default=str)[:60]}"


def config_text(rng: random.Random, seed: dict, seed_text: str) -> tuple[str | bytes, str]:
    """A tampered config.json: usually valid JSON with 1-3 changed values, sometimes broken text."""
    if rng.random() < 0.85:
        config = copy.deepcopy(seed)
        done = [mutate_once(rng, config) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        return json.dumps(config), "; ".join(done)
    kind = rng.randrange(8)
    if kind == 7 and rng.random() < 0.9:  # writing 17 MiB costs: now and then is enough
        kind = 0
    if kind == 0:
        cut = rng.randrange(len(seed_text))
        return seed_text[:cut], f"truncated at {cut}"
    if kind == 1:
        data = bytearray(seed_text.encode())
        for _ in range(rng.randrange(1, 10)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), "flipped bytes"
    if kind == 2:
        return "[" * 100_000 + "]" * 100_000, "100000-deep nesting"
    if kind == 3:
        return seed_text.replace('"ocbe_blocks": 3', '"ocbe_blocks": ' + "9" * rng.choice([20, 5000])), "huge integer"
    if kind == 4:
        return seed_text.replace('"blur_sigma": 4.0', '"blur_sigma": 1e999'), "1e999"
    if kind == 5:
        return rng.choice(["", "null", "[]", "42", '"model"', '{"model": null}', '{"model": {}}']), "not an object"
    if kind == 6:
        return b"\xff\xfe" + seed_text.encode("utf-16-le"), "utf-16"
    return seed_text + " " * (17 * 2**20), "17 MiB config"


# -- weights ---------------------------------------------------------------------------------------------------
def weights_bytes(rng: random.Random, seed_bytes: bytes, seed_state: dict) -> tuple[bytes, str, bool]:
    """A tampered model.safetensors; the bool says whether the config should name its hash (get past that check)."""
    import torch
    from safetensors.torch import save

    n = struct.unpack("<Q", seed_bytes[:8])[0]
    header = json.loads(seed_bytes[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    kind = rng.randrange(10)
    if kind == 0:
        cut = rng.randrange(len(seed_bytes))
        return seed_bytes[:cut], f"truncated at {cut}", False
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 7, 8, 64, 4096]))), "random bytes", False
    if kind == 2:
        return struct.pack("<Q", rng.choice([0, 2**63, 2**40, n + 1, len(seed_bytes)])) + seed_bytes[8:], \
            "header length", False
    if kind == 3:  # the header's JSON edited: shapes, dtypes, offsets that do not fit the data
        name = rng.choice(names)
        entry = header[name]
        field = rng.choice(["shape", "dtype", "data_offsets"])
        entry[field] = {"shape": rng.choice([[2**40], [10**6, 10**6], [-1], [], "x"]),
                        "dtype": rng.choice(["F64", "I8", "BOOL", "XX", 3]),
                        "data_offsets": rng.choice([[0, 2**62], [-1, 4], [8, 0], [0]])}[field]
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + seed_bytes[8 + n:], f"header {field} of {name}", False
    if kind == 4:  # garbage in the header text
        data = bytearray(seed_bytes)
        for _ in range(5):
            data[8 + rng.randrange(n)] = rng.randrange(256)
        return bytes(data), "garbled header", False
    # a well-formed file with other contents
    state = dict(seed_state)
    name = rng.choice(names)
    change = rng.randrange(7)
    if change == 0:
        del state[name]
    elif change == 1:
        state["extra.weight"] = torch.zeros(3)
    elif change == 2:
        state[name] = state[name].reshape(-1) if state[name].dim() != 1 else state[name][:1]
    elif change == 3:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    elif change == 4:
        state[name] = state[name].to(rng.choice([torch.int8, torch.float64, torch.bool, torch.bfloat16]))
    elif change == 5:
        state[name] = torch.full_like(state[name], math.nan) if state[name].is_floating_point() else state[name]
    else:
        state = {k: v.double() for k, v in state.items()}
    return save(state, metadata={"format": "pt"}), f"rewritten ({change}) {name}", rng.random() < 0.7


# -- the run ---------------------------------------------------------------------------------------------------
def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_now() -> int:
    return _status_bytes("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    except OSError:
        pass


def rss_peak() -> int:
    return _status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def model_key(config: dict, weights_sha256: str) -> str:
    """What load_checkpoint (with pretrained_expert given) reads after read_config: equal keys, equal outcomes."""
    backbone, section = config.get("backbone"), config.get("input") or {}
    parts = {"model": config["model"], "input.image_size": section.get("image_size"),
             "backbone": None if backbone is None else {k: v for k, v in backbone.items() if k != "pretrained"},
             "weights_sha256": config.get("weights_sha256"), "file": weights_sha256}
    return json.dumps(parts, sort_keys=True, default=str)


def run(seed_folder: Path, work: Path, seed: int) -> dict:
    import torch

    from rdexpert.checkpoint.folder import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, CheckpointInfo, load_checkpoint
    from rdexpert.checkpoint.folder import read_config
    from rdexpert.checkpoint.io import read_tensors
    from rdexpert.inference.calibration import Calibration
    from rdexpert.model import ExpertTeacherStudent

    torch.set_num_threads(1)
    rng = random.Random(seed)
    folder = work / "fuzzed"
    shutil.copytree(seed_folder, folder)
    seed_text = (seed_folder / CONFIG_NAME).read_text()
    seed_config = json.loads(seed_text)
    seed_weights = (seed_folder / WEIGHTS_NAME).read_bytes()
    seed_hash = hashlib.sha256(seed_weights).hexdigest()
    seed_state = read_tensors(seed_folder / WEIGHTS_NAME)
    load_checkpoint(folder, pretrained_expert=False)  # one ordinary load: the baseline of the memory measure
    reset_peak()
    baseline = rss_now()
    outcomes, failures, counts, built = {}, [], {"loaded": 0, "refused": 0}, 0
    began = time.perf_counter()

    def attempt(description: str, weights_sha256: str) -> None:
        nonlocal built
        try:
            try:
                config = read_config(folder)
            except CheckpointError as error:
                outcome = ("refused", str(error))
            else:
                # the sections load_checkpoint does not read still feed the predictor and the app
                info = CheckpointInfo.from_config(config)
                (info.threshold, info.category, info.default_setting, info.variant, info.pretrained)
                try:
                    Calibration.from_config(config)
                except ValueError as error:
                    assert "no calibrated threshold" in str(error), error
                key = model_key(config, weights_sha256)
                if key not in outcomes:
                    built += 1
                    try:
                        model, loaded = load_checkpoint(folder, pretrained_expert=False)
                        assert isinstance(model, ExpertTeacherStudent) and loaded["source"]["type"] == "local"
                        outcomes[key] = ("loaded", "")
                        del model
                    except CheckpointError as error:
                        outcomes[key] = ("refused", str(error))
                outcome = outcomes[key]
            kind, message = outcome
            if kind == "refused":
                assert "\n" not in message and str(folder) in message, f"not one line naming the file: {message!r}"
            counts[kind] += 1
        except Exception:  # anything else is a finding
            failures.append(f"{description}: {traceback.format_exc(limit=4)[-1500:]}")

    for _ in range(CONFIG_CASES):
        text, description = config_text(rng, seed_config, seed_text)
        (folder / CONFIG_NAME).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        attempt(f"config.json: {description}", seed_hash)
    config_seconds = time.perf_counter() - began
    for _ in range(WEIGHT_CASES):
        weights, description, name_hash = weights_bytes(rng, seed_weights, seed_state)
        config, digest = copy.deepcopy(seed_config), hashlib.sha256(weights).hexdigest()
        if name_hash:
            config["weights_sha256"] = digest
        (folder / CONFIG_NAME).write_text(json.dumps(config))
        (folder / WEIGHTS_NAME).write_bytes(weights)
        attempt(f"model.safetensors: {description}", digest)
    peak = rss_peak()
    return {"cases": CONFIG_CASES + WEIGHT_CASES, **counts, "models_built_or_refused_after_schema": built,
            "seconds": round(time.perf_counter() - began, 1), "config_seconds": round(config_seconds, 1), "baseline_rss_bytes": baseline,
            "peak_rss_bytes": peak, "peak_growth_bytes": peak - baseline, "failures": failures[:10]}


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)  # unknown top-level sections are logged once per case; not needed here
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    summary = run(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
    print(json.dumps(summary))
