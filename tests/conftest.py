"""Shared fixtures: the real data shipped beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MPDD = DATA / "mpdd"
DTD = DATA / "dtd" / "images"


@pytest.fixture(scope="session")
def mpdd_root() -> Path:
    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"real data not found at {MPDD}")
    return MPDD


@pytest.fixture(scope="session")
def dtd_root() -> Path:
    if not DTD.is_dir():
        pytest.skip(f"DTD textures not found at {DTD}")
    return DTD
