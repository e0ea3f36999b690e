"""pyproject.toml and requirements.txt agree: every declared dependency is in both, the environment the
tests run in satisfies both, and the huggingface-hub floor is stated once (the same) in each."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in ("app", "export"):
        lines += project["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _requirements() -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return {canonicalize_name(r.name): r for r in map(Requirement, filter(None, lines))}


def test_requirements_and_pyproject_name_the_same_packages():
    assert set(_pyproject()) == set(_requirements())


def test_installed_versions_satisfy_both_files():
    pyproject, requirements = _pyproject(), _requirements()
    for name, declared in pyproject.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is declared but not installed")
        assert declared.specifier.contains(installed, prereleases=True), f"{name} {installed} vs pyproject {declared}"
        pinned = requirements[name]
        assert pinned.specifier.contains(installed, prereleases=True), f"{name} {installed} vs requirements {pinned}"


def test_huggingface_hub_floor_is_the_same_in_both_files():
    assert str(_pyproject()["huggingface-hub"].specifier) == str(_requirements()["huggingface-hub"].specifier)


@pytest.mark.parametrize("blocked", ["gradio", "plotly"])
def test_the_app_without_its_extra_says_which_command_installs_it(blocked):
    """Without gradio or plotly (blocked in sys.modules, as if not installed) ``python app.py`` ends in one line
    naming ``pip install "rdexpert[app]"``, not a traceback."""
    code = (f"import sys, runpy; sys.modules[{blocked!r}] = None; sys.argv = ['app.py']; "
            "runpy.run_path('app.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and blocked in lines[0] and 'pip install "rdexpert[app]"' in lines[0], done.stderr


def test_every_optional_dependency_has_its_line():
    """rdexpert.extras names each extra's packages as pyproject.toml does (a new optional package gets its line)."""
    from rdexpert.extras import EXTRAS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, (_, packages) in EXTRAS.items():
        assert {canonicalize_name(Requirement(line).name) for line in extras[extra]} == set(packages), extra
