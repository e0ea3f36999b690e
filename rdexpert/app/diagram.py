"""The expert → teacher → student diagram shown in the Ablations tab, drawn by code so it can be regenerated.

Regenerate ``assets/ets_diagram.png`` after changing the drawing::

    .venv/bin/python -m rdexpert.app.diagram            # or: python -m rdexpert.app.diagram OUT.png

Drawn with matplotlib boxes and arrows (no hand-made picture to drift from the
model): the frozen expert, the trained teacher, the student's OCBE and decoder,
and the GII gates between the teacher's features and the decoder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

DIAGRAM = Path(__file__).resolve().parents[2] / "assets" / "ets_diagram.png"
DIAGRAM_CAPTION = "Expert → teacher → student, with GII"

# (x, y) centres on a 12 x 6 canvas; colours say frozen / trained / student / gate
FROZEN, TRAINED, STUDENT, GATE = "#cfd8dc", "#ffe0b2", "#c8e6c9", "#bbdefb"
BOXES = {
    "image": ((0.9, 3.8), "image", "#ffffff"),
    "expert": ((3.6, 5.0), "expert\n(frozen, pretrained)", FROZEN),
    "teacher": ((3.6, 2.7), "teacher\nT1 · T2 · T3\n(trained)", TRAINED),
    "ocbe": ((6.3, 2.7), "OCBE\n(bottleneck)", STUDENT),
    "decoder": ((9.0, 2.7), "student decoder\nS3 → S2 → S1", STUDENT),
    "gii": ((9.0, 0.5), "GII gate per scale\ns = cos(S_k, T_k)\nI = F_k·s + S_k·(1−s)", GATE),
    "map": ((11.7, 4.6), "anomaly map\n1 − cos(S_k, ref)", "#ffcdd2"),
}
# (from, to, label, curvature): a curved arrow keeps clear of the boxes between its ends
ARROWS = [
    ("image", "expert", "", 0.0),
    ("image", "teacher", "", 0.0),
    ("expert", "teacher", "init + targets", 0.0),
    ("teacher", "ocbe", "", 0.0),
    ("ocbe", "decoder", "", 0.0),
    ("teacher", "gii", "teacher detail F_k", 0.0),
    ("gii", "decoder", "injected I", 0.0),
    ("decoder", "map", "student S_k", 0.0),
    ("teacher", "map", "reference T_k", -0.25),
]
BOX_SIZE = (2.1, 1.2)
PAD = 0.05  # the rounded boxes' padding


def _edge(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """Where the line from ``start`` to ``end`` leaves the box centred on ``start``."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    half_w, half_h = BOX_SIZE[0] / 2 + PAD, BOX_SIZE[1] / 2 + PAD
    t = min(half_w / abs(dx) if dx else float("inf"), half_h / abs(dy) if dy else float("inf"))
    return x0 + t * dx, y0 + t * dy


def draw(path: str | Path = DIAGRAM, dpi: int = 110) -> Path:
    """Draw the diagram into ``path`` (PNG) and return it."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(12, 6))
    ax.set_xlim(-0.3, 12.9)
    ax.set_ylim(-0.3, 5.8)
    ax.axis("off")
    w, h = BOX_SIZE
    for (x, y), text, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=f"round,pad={PAD}", fc=colour, ec="#37474f"))
        ax.text(x, y, text, ha="center", va="center", fontsize=10)
    for start, end, label, curvature in ARROWS:
        a, b = BOXES[start][0], BOXES[end][0]
        tail, head = _edge(a, b), _edge(b, a)
        ax.annotate("", xy=head, xytext=tail, arrowprops=dict(
            arrowstyle="-|>", color="#37474f", lw=1.4, shrinkA=0, shrinkB=0, connectionstyle=f"arc3,rad={curvature}"))
        if label:  # at the middle of the arc: the chord's midpoint moved out by the curvature
            mx, my = (tail[0] + head[0]) / 2, (tail[1] + head[1]) / 2
            mx += curvature * (head[1] - tail[1]) / 2
            my -= curvature * (head[0] - tail[0]) / 2
            ax.text(mx, my, label, ha="center", va="center", fontsize=8, color="#455a64",
                    bbox=dict(fc="white", ec="none", alpha=0.85, pad=1))
    ax.set_title("RD with Expert: the expert guides the teacher; GII lets teacher detail into the student "
                 "only where they agree", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(draw(sys.argv[1] if len(sys.argv) > 1 else DIAGRAM))
