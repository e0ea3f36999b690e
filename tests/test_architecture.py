"""The package's layer order, as data, and a check of every import against it.

A module may import modules of its own layer or of lower layers, never of a
higher one, and no chain of imports may lead back to where it started (lazy
imports inside functions count too: they are circles that merely fail later).
Add a new module to the layer it belongs to; the test fails until you do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rdexpert"

# layer, lowest first: (name, module patterns). "x.*" means the package x and all its modules.
LAYERS = [
    ("foundation", ["rdexpert", "runtime", "extras", "training", "inference", "evaluation", "checkpoint",
                    "training.distributed", "training.recipe", "checkpoint.io", "checkpoint.format",
                    "evaluation.metrics", "inference.calibration", "model.backbones", "synthesis.*", "data.images.*"]),
    ("data", ["data", "data.layouts.*", "data.datasets", "evaluation.plots"]),
    ("model", ["model.*"]),
    ("loading", ["hub", "hub.resolve", "checkpoint.specs", "checkpoint.schema", "checkpoint.folder", "inference.scoring", "training.losses",
                 "training.health", "inference.ood"]),
    ("workflows", ["checkpoint.pretrained", "evaluation.record", "hub.publish", "inference.onnx_backend", "inference.predictor", "evaluation.evaluate",
                   "training.calibrate_threshold", "training.config", "training.step", "training.resume", "training.output_room", "training.loop", "training.categories",
                   "inference.export"]),
    ("interfaces", ["cli.*", "__main__", "app.*"]),
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every rdexpert module that ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("rdexpert") and target != name:
                found.add(target)
    return found


def _layer_of(name: str) -> int:
    short = name.removeprefix("rdexpert.") if name != "rdexpert" else "rdexpert"
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if short == pattern or (pattern.endswith(".*") and (short == pattern[:-2] or short.startswith(pattern[:-1]))):
                return index
    raise KeyError(name)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer(graph):
    missing = []
    for name in graph:
        try:
            _layer_of(name)
        except KeyError:
            missing.append(name)
    assert not missing, f"modules without a layer in LAYERS: {missing}"


def test_no_import_goes_up_a_layer(graph):
    upward = [
        f"{name} ({LAYERS[_layer_of(name)][0]}) imports {target} ({LAYERS[_layer_of(target)][0]})"
        for name, targets in graph.items() for target in targets if _layer_of(target) > _layer_of(name)
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_circle(graph):
    # a package importing its own submodules (re-exports) is not a circle unless a submodule imports back up
    circles, state = [], {}

    def visit(name, stack):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circle = stack[stack.index(target):] + [target]
                if not _is_reexport_only(circle):
                    circles.append(" -> ".join(circle))
            elif target not in state:
                visit(target, stack + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)


def _is_reexport_only(circle: list[str]) -> bool:
    """``pkg -> pkg.sub -> pkg``: a submodule importing its parent package for a re-exported name."""
    return all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(circle, circle[1:]))


def test_the_layer_table_catches_an_upward_import(graph):
    """The check itself can fail: a foundation module importing the CLI would be reported."""
    assert _layer_of("rdexpert.cli") > _layer_of("rdexpert.evaluation.metrics")
    tampered = {**graph, "rdexpert.evaluation.metrics": graph["rdexpert.evaluation.metrics"] | {"rdexpert.cli"}}
    with pytest.raises(AssertionError, match="metrics .foundation. imports rdexpert.cli"):
        test_no_import_goes_up_a_layer(tampered)


def test_the_circle_check_catches_a_lazy_circle(graph):
    """checkpoint -> hub.resolve -> checkpoint (the circle this package once had) would be reported."""
    tampered = {**graph, "rdexpert.hub.resolve": graph["rdexpert.hub.resolve"] | {"rdexpert.checkpoint.folder"}}
    with pytest.raises(AssertionError, match="rdexpert.checkpoint.folder -> rdexpert.hub.resolve -> rdexpert.checkpoint.folder"):
        test_no_import_circle(tampered)
