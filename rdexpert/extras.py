"""The optional dependencies: which extra of pyproject.toml brings each, and the one line that says so.

Why: without an extra, what needs it must end in one line naming the command that installs it, not in a
traceback from inside gradio or torch.onnx. One table (checked against pyproject.toml by tests/test_packaging.py,
so a new optional dependency cannot go without its line) and one error, for the app and for ONNX export alike.
No rdexpert imports: app.py reads it before the app's own imports.
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec

# extra -> (what needs it, its packages by import name; pyproject's [project.optional-dependencies])
EXTRAS = {
    "app": ("the rdexpert app", ("gradio", "plotly")),
    "export": ("ONNX export and the ONNX Runtime backend", ("onnx", "onnxscript", "onnxruntime")),
}


class MissingExtra(RuntimeError):
    """An optional package is not installed; the message names the pip command (a RuntimeError, so the CLI
    prints it as its one error line)."""

    def __init__(self, extra: str, packages: list[str]):
        needs, _ = EXTRAS[extra]
        verb = "need" if " and " in needs else "needs"
        super().__init__(f"{needs} {verb} {' and '.join(packages)}, not installed here: "
                         f'pip install "rdexpert[{extra}]" (or pip install -r requirements.txt)')
        self.extra, self.packages = extra, packages


def extra_of(package: str) -> str:
    """The extra that brings ``package``."""
    return next(extra for extra, (_, packages) in EXTRAS.items() if package in packages)


def optional_module(name: str):
    """Import the optional package ``name``, or raise :class:`MissingExtra` naming its extra."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise MissingExtra(extra_of(name), [name]) from error


def _installed(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: None in sys.modules (its import is blocked)
        return False


def require_extra(extra: str) -> None:
    """Raise :class:`MissingExtra` unless every package of ``extra`` is installed (found, not imported: plotly
    is imported lazily, on the first plot)."""
    missing = [name for name in EXTRAS[extra][1] if not _installed(name)]
    if missing:
        raise MissingExtra(extra, missing)
