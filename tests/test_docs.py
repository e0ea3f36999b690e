"""The documents describe the code they sit beside: the layer tables of README.md ("Repository layout") and
docs/design.md (§8) are tests/test_architecture.py's LAYERS, and design.md's recipe table is the recipes' data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_architecture import LAYERS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DESIGN = ROOT / "docs" / "design.md"


def _section(text: str, heading: str) -> str:
    """The text under a markdown ``heading`` line, up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines))
                if lines[i].startswith("#") and len(lines[i]) - len(lines[i].lstrip("#")) <= level), len(lines))
    return "\n".join(lines[start:end])


def _table(text: str, first_header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first markdown table in ``text`` whose header starts with
    ``| first_header |``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[0] == first_header:
            rows = []
            for row in lines[i + 2:]:  # skip the |---| line
                if not row.lstrip().startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table with the header column {first_header!r}")


def _layer_table(text: str) -> list[tuple[str, list[str]]]:
    """(layer, module patterns) per row of a ``| layer | modules | ...`` table; patterns are the backticked words."""
    return [(row[0], re.findall(r"`([^`]+)`", row[1])) for row in _table(text, "layer")]


def _expected_rows() -> str:
    return "\n".join(f"| {name} | {', '.join(f'`{m}`' for m in modules)} |" for name, modules in LAYERS)


def _check_layers(found: list[tuple[str, list[str]]], where: str) -> None:
    assert [name for name, _ in found] == [name for name, _ in LAYERS], f"{where}: layer names or order differ"
    for (name, modules), (_, expected) in zip(found, LAYERS):
        assert sorted(modules) == sorted(expected), (
            f"{where}: layer {name!r} lists {sorted(set(modules) ^ set(expected))} differently from "
            f"tests/test_architecture.py's LAYERS; its rows should read:\n{_expected_rows()}")
        assert len(modules) == len(set(modules)), f"{where}: layer {name!r} names a module twice"


def test_readme_layer_table_is_the_architecture_tests_layers():
    text = _section(README.read_text(encoding="utf-8"), "## Repository layout")
    _check_layers(_layer_table(text), "README.md, Repository layout")


def test_design_layer_table_is_the_architecture_tests_layers():
    text = _section(DESIGN.read_text(encoding="utf-8"), "## 8. Layers")
    _check_layers(_layer_table(text), "docs/design.md §8")


def test_design_recipe_table_is_the_recipes_data():
    """Every row of the recipe table in docs/design.md §3.5 is a field of CHOICES with the values of
    RELEASED and IMPROVED and the allowed choices, in CHOICES order."""
    recipe = pytest.importorskip("rdexpert.training.recipe")
    reference, improved = recipe.RELEASED.to_dict(), recipe.IMPROVED.to_dict()
    expected = [[str(n), f"`{name}`", f"`{reference[name]}`", f"`{improved[name]}`",
                 ", ".join(f"`{v}`" for v in values)]
                for n, (name, values) in enumerate(recipe.CHOICES.items(), 1)]
    section = _section(DESIGN.read_text(encoding="utf-8"), "### 3.5 Training settings: presets and the recipe")
    rows = _table(section, "row")
    assert [row[:5] for row in rows] == expected


def test_the_parsers_read_a_table():
    """The checks above can fail: a table missing a module is reported."""
    text = "## 8. Layers\n\n| layer | modules |\n|---|---|\n" + "\n".join(
        f"| {name} | {', '.join(f'`{m}`' for m in modules[1:])} |" for name, modules in LAYERS)
    with pytest.raises(AssertionError, match="differently"):
        _check_layers(_layer_table(_section(text, "## 8. Layers")), "sample")


@pytest.mark.parametrize("document", [README, DESIGN], ids=["README", "design"])
def test_every_file_a_document_names_exists(document):
    """Module, test and bench paths named in the documents survive moves (the stage folders renamed many)."""
    named = set(re.findall(r"\b((?:rdexpert|tests|bench)/[\w/]+\.py)\b", document.read_text()))
    assert named, "the pattern no longer finds the paths"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []
