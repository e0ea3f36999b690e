"""Tabs do not import each other: what two tabs share lives in a module of the app that is not a tab.

Why this test exists: a tab importing another (Evaluate importing Inspect's
handler and its output count, Ablations importing Inspect's state) ties their
outputs together by position; shared pieces go to :mod:`rdexpert.app.inspection`,
:mod:`rdexpert.app.common` or another non-tab module. Read with ``ast``, so
imports inside functions count too.
"""

from __future__ import annotations

import ast

from .support import ROOT

APP = ROOT / "rdexpert" / "app"


def tab_imports(source: str, own: str) -> list[str]:
    """The ``tab_*`` modules other than ``own`` that ``source`` imports (absolute or relative, any depth)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module or ''}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [part for name in names for part in name.split(".") if part.startswith("tab_") and part != own]
    return found


def test_no_tab_imports_another_tab():
    tabs = sorted(APP.glob("tab_*.py"))
    assert len(tabs) >= 4, tabs  # inspect, ablations, finetune, evaluate: the check is not vacuous
    offending = {path.name: tab_imports(path.read_text(encoding="utf-8"), path.stem) for path in tabs}
    assert not {name: found for name, found in offending.items() if found}


def test_the_check_catches_a_tab_importing_another():
    source = (
        "from rdexpert.app.tab_inspect import inspect\n"
        "from rdexpert.app import tab_finetune\n"
        "def later():\n    from . import tab_ablations\n    import rdexpert.app.tab_evaluate\n"
        "from rdexpert.app.inspection import inspect\nfrom rdexpert.app.tab_own import x\n"
    )
    assert tab_imports(source, "tab_own") == ["tab_inspect", "tab_finetune", "tab_ablations", "tab_evaluate"]
