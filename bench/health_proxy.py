"""Is the training health check's proxy biased towards the trained teacher?

The check scores synthetic defects made by the same synthesizer the teacher was trained to push away
(Perlin-shaped texture blends). A teacher that learned exactly those can pass it and still fail on real
defects. This bench re-checks the finished `full` runs of bench/robustness.py with another family of
defects the teacher never saw: opaque rectangles of DTD texture pasted on the held-out normal images
(cut-paste style, hard edges), and counts, for each proxy, how often the sign of "teacher minus expert"
on the check agrees with the sign on the real test split (P-AUROC, stored by the suite).

    python bench/robustness.py            # first: the runs (cached in bench/runs/robustness/)
    python bench/health_proxy.py          # then this; results in bench/results/health_proxy.{md,json}
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line, save_results  # noqa: E402
from robustness import WORK, row_data  # noqa: E402

from rdexpert.checkpoint.folder import load_checkpoint, training_split  # noqa: E402
from rdexpert.checkpoint.io import read_json  # noqa: E402
from rdexpert.data import load_image, resize_image  # noqa: E402
from rdexpert.synthesis.textures import TextureSource  # noqa: E402
from rdexpert.training.health import HEALTH_MAX_IMAGES, HealthSet, check_health  # noqa: E402

SEED = 7


def pasted_rectangles(images: list[np.ndarray], textures: TextureSource, draws: int = 2) -> HealthSet:
    """Each image with ``draws`` opaque DTD rectangles (one per copy), sides 1/8 to 1/3 of the image."""
    rng = np.random.default_rng(SEED)
    clean = [np.asarray(i, np.float32) / 255.0 for i in images]
    augmented, masks = [], []
    for image in clean:
        size = image.shape[0]
        for _ in range(draws):
            h, w = (int(v) for v in rng.integers(size // 8, size // 3 + 1, size=2))
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            copy, mask = image.copy(), np.zeros(image.shape[:2], np.float32)
            copy[y:y + h, x:x + w] = textures.sample(rng, (h, w))
            mask[y:y + h, x:x + w] = 1
            augmented.append(copy)
            masks.append(mask)
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return HealthSet(as_tensor(clean), as_tensor(augmented), torch.from_numpy(np.stack(masks)))


def main() -> None:
    torch.set_num_threads(2)
    textures = TextureSource(HERE.parent.parent / "shared" / "data" / "dtd" / "images")
    rows = []
    for folder in sorted(WORK.glob("*_full*_128px_200it_s*")):
        result_file = folder / "result.json"
        if not result_file.is_file():
            continue
        result = read_json(result_file)
        if "expert" not in result.get("by_reference", {}) or result["column"] not in ("full", "full_frozen"):
            continue
        root, category, _ = row_data(result["row"])
        model, config = load_checkpoint(folder)
        train, holdout = training_split(config, root, category)
        size = model.config.image_size
        images = [resize_image(load_image(s.path), size) for s in (holdout or train)[:HEALTH_MAX_IMAGES]]
        pasted = check_health(model, pasted_rectangles(images, textures), torch.device("cpu"))
        stored = result["health"]
        test = result["by_reference"]
        rows.append({
            "run": folder.name, "row": result["row"], "column": result["column"], "seed": result["seed"],
            "test_delta": test["teacher"]["pixel_auroc"] - test["expert"]["pixel_auroc"],
            "training_proxy_delta": stored["separation_teacher"] - stored["separation_expert"],
            "pasted_proxy_delta": pasted["separation_teacher"] - pasted["separation_expert"],
        })
        print(rows[-1], flush=True)

    def agreement(key: str) -> str:
        agree = sum(np.sign(r[key]) == np.sign(r["test_delta"]) for r in rows)
        return f"{agree} of {len(rows)}"

    lines = [
        "# Health-check proxy: does its teacher-vs-expert sign agree with the real test split?", "",
        f"Machine: {machine_line()}.", "Command: `python bench/health_proxy.py` (on the finished runs of "
        "`python bench/robustness.py`: 128 px, 200 iterations, `full` and `full_frozen`, 7 rows x 3 seeds).", "",
        "Δ = pixel AUROC with the teacher as reference minus with the expert, in points.", "",
        "| proxy | sign agrees with the test split's Δ P-AUROC |", "|---|---|",
        f"| training synthesizer (Perlin texture blends; what the check uses) | {agreement('training_proxy_delta')} |",
        f"| pasted DTD rectangles (a defect family the teacher never trained on) | {agreement('pasted_proxy_delta')} |",
        "", "| run | test Δ | training-proxy Δ | pasted-proxy Δ |", "|---|---|---|---|",
    ]
    lines += [f"| {r['run']} | {100 * r['test_delta']:+.1f} | {100 * r['training_proxy_delta']:+.1f} | "
              f"{100 * r['pasted_proxy_delta']:+.1f} |" for r in rows]
    save_results("health_proxy", "\n".join(lines) + "\n", rows=rows)


if __name__ == "__main__":
    main()
