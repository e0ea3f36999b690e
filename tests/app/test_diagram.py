"""The architecture diagram of the Ablations tab (rdexpert.app.diagram).
"""

from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("gradio")

from .support import GRADIO_WARNINGS, ROOT  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_architecture_diagram_is_regenerated(tmp_path):
    """``python -m rdexpert.app.diagram`` draws the Ablations tab's picture; the shipped one is not an example."""
    from rdexpert.app.diagram import DIAGRAM, draw
    from rdexpert.app.examples import ExampleSet

    path = draw(tmp_path / "ets.png")
    with Image.open(path) as picture:
        width, height = picture.size
        assert picture.format == "PNG" and 800 <= width <= 2000 and 350 <= height <= 1200, picture.size
    assert 20_000 < path.stat().st_size < 500_000
    assert DIAGRAM.is_file() and DIAGRAM.parent == ROOT / "assets"
    assert str(DIAGRAM) not in [e.path for e in ExampleSet.scan(ROOT / "assets" / "examples").all]
