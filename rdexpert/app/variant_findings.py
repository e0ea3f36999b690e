"""What the stored metrics of the trained variants say, per product: sentences and a side-by-side table.

Every number comes from the checkpoints' config.json (``rdexpert test --save-metrics``), at each checkpoint's
default setting; nothing here names a product or holds a measured value. Each component is judged by comparing
two variants that differ in it (read from the :class:`~rdexpert.model.Variant` flags): every variant against the
ablation ladder's first (plain RD), and a variant with plain skips against its gated twin (the GII gate). A
difference under :data:`NOISE` points is called seed noise (one seed per variant; see the README's 3-seed
ablation).

    python -m rdexpert.app.variant_findings --checkpoints checkpoints   # the table, for README.md
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from rdexpert.app import views
from rdexpert.app.registry import ABLATION_VARIANTS, COMPARED_VARIANTS, Entry, Registry
from rdexpert.evaluation.metrics import METRIC_NAMES
from rdexpert.model import VARIANTS, Variant

KEYS = ("image_auroc", "pixel_auroc", "aupro")  # what the sentences and the table compare
NOISE = 1.0  # points (%): a smaller difference is not called a gain or a loss
CHANCE_NEAR = 70.0  # a best I-AUROC below this (%) is said to be close to chance (50)


def _value(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return 100 * float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def component(base: Variant, other: Variant) -> str:
    """What ``other`` adds to ``base``, in words (from their flags)."""
    parts = []
    if other.train_teacher and not base.train_teacher:
        parts.append("the trained teacher" + (" with expert targets" if other.expert_targets else ""))
    if other.augmented_student and not base.augmented_student:
        parts.append("the augmented student")
    if other.skip != base.skip:
        if base.skip == "plain" and other.skip == "gated":
            parts.append("the GII gate (gated instead of plain skips)")
        else:
            parts.append({"gated": "gated GII skips", "plain": "plain skips", "none": "no skips"}[other.skip])
    return " + ".join(parts) or "nothing"


def pairs(found) -> list[tuple[str, str]]:
    """(base, other) variant pairs that isolate components: every variant against plain RD, and a plain-skip
    variant's gated twin against it."""
    out = []
    baseline = ABLATION_VARIANTS[0]
    if baseline in found:
        out += [(baseline, v) for v in found if v != baseline and v in ABLATION_VARIANTS]
    for plain in (v for v in found if VARIANTS[v].skip == "plain"):
        gated = replace(VARIANTS[plain], skip="gated")
        twin = next((v for v in found if VARIANTS[v] == gated), None)
        if twin is not None:
            out.append((plain, twin))
    return out


def verdict(base: dict, other: dict) -> tuple[str, str]:
    """(verdict, numbers) for ``other`` against ``base``: "helps", "does not help", "makes no difference beyond
    seed noise" or a mixed answer, and "I-AUROC 50.2 vs 54.5, ..."."""
    ups, downs, numbers = [], [], []
    for key in KEYS:
        a, b = _value(other, key), _value(base, key)
        if a is None or b is None:
            continue
        numbers.append(f"{METRIC_NAMES[key]} {a:.1f} vs {b:.1f}")
        if a - b >= NOISE:
            ups.append(METRIC_NAMES[key])
        elif b - a >= NOISE:
            downs.append(METRIC_NAMES[key])
    if not numbers:
        return "", ""
    if ups and not downs:
        word = f"helps (higher {', '.join(ups)})"
    elif downs and not ups:
        word = f"does not help (lower {', '.join(downs)})"
    elif not ups:
        word = "makes no difference beyond seed noise"
    else:
        word = f"is mixed: higher {', '.join(ups)}, lower {', '.join(downs)}"
    return word, ", ".join(numbers)


def findings(category: str | None, rows: dict[str, dict]) -> str:
    """Markdown: what each component does on ``category`` according to ``rows`` ({variant: stored metrics})."""
    lines = []
    for base, other in pairs(rows):
        word, numbers = verdict(rows[base], rows[other])
        if word:
            what = component(VARIANTS[base], VARIANTS[other])
            lines.append(f"- {what} (`{other}` vs `{base}`) {word}: {numbers}.")
    if not lines:
        return ""
    best = max((v for m in rows.values() if (v := _value(m, "image_auroc")) is not None), default=None)
    if best is not None and best < CHANCE_NEAR:
        lines.append(f"- No variant separates normal from defective images well on {category}: the best I-AUROC "
                     f"is {best:.1f} (50 is chance), so image-level differences between them say little.")
    return (f"What the stored numbers show on **{category}** (one seed; a difference under {NOISE:.0f} point is "
            "called noise):\n\n" + "\n".join(lines))


def product_rows(registry: Registry) -> dict[str, dict[str, dict]]:
    """{product: {variant: stored metrics}}: every product with at least two trained variants of one budget."""
    categories = []
    for key in registry.choices():
        category = registry.get(key).category
        if category and category not in categories:
            categories.append(category)
    out = {}
    for category in categories:
        found: dict[str, Entry] = registry.variants(category)
        if len(found) >= 2:
            out[category] = {variant: entry.metrics for variant, entry in found.items()}
    return out


def product_table(rows: dict[str, dict[str, dict]]) -> str:
    """Markdown: one row per variant, one column per product, each cell "I-AUROC / P-AUROC / AUPRO"."""
    if not rows:
        return ""
    names = " / ".join(METRIC_NAMES[k] for k in KEYS)
    header = "| variant | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows)
    body = []
    for variant in COMPARED_VARIANTS:
        if not any(variant in found for found in rows.values()):
            continue
        cells = []
        for found in rows.values():
            values = [_value(found.get(variant, {}), k) for k in KEYS]
            cells.append(" / ".join("–" if v is None else f"{v:.1f}" for v in values))
        body.append(f"| `{variant}` | " + " | ".join(cells) + " |")
    return f"{names} (%) of each product's trained variants, from their stored test metrics:\n\n" + header + "\n" + \
        "\n".join(body)


def stored_variants_text(registry: Registry, category: str | None) -> str:
    """The stored test metrics of every trained variant of ``category`` (one budget) and what they show there;
    a sentence on how to get them when fewer than two are loaded."""
    found = registry.variants(category)
    if len(found) < 2:
        missing = [v for v in ABLATION_VARIANTS if v not in found]
        return (
            f"Only {', '.join(f'`{v}`' for v in found) or 'no'} checkpoint(s) of category "
            f"`{category}` are loaded. Train the others (`rdexpert train --variant "
            f"{missing[0] if missing else 'rd'} ...`) and start the app with `--checkpoints DIR` to compare "
            "the ablation variants here, with their stored metrics."
        )
    rows = {f"`{variant}` ({views.variant_text(variant)})": e.metrics for variant, e in found.items()}
    t = next(iter(found.values())).info.training
    budget = f"`{t.get('backbone', '?')}`, {t.get('image_size', '?')} px, {t.get('iterations', '?')} iterations"
    text = (
        f"Stored test metrics of each of the {len(found)} variants of **{category}** (%, from its config.json), all "
        f"trained with the same budget ({budget}; one seed: differences of about a point are seed noise, see the "
        "README's 3-seed ablation):\n\n" + views.metrics_markdown(rows, "variant")
    )
    told = views.escape_at(findings(category, {variant: e.metrics for variant, e in found.items()}))
    return text + ("\n\n" + told if told else "")


def products_text(registry: Registry) -> str:
    """Every product's trained variants side by side (stored metrics), or nothing when no product has two."""
    table = product_table(product_rows(registry))
    return "### Every product's variants\n\n" + views.escape_at(table) if table else ""


def variants_heading(category: str | None) -> str:
    return f"### Trained variants of {category}" if category else "### Trained variants of this product"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The per-product variants table (markdown) of checkpoint folders.")
    parser.add_argument("--checkpoints", action="append", default=[], metavar="DIR")
    args = parser.parse_args(argv)
    registry = Registry(device="cpu")
    for folder in args.checkpoints or ["checkpoints"]:
        registry.scan(folder)
    rows = product_rows(registry)
    print(product_table(rows))
    for category, found in rows.items():
        print("\n" + findings(category, found))


if __name__ == "__main__":
    main()
