"""The app's plotly figures: the fine-tune's loss and health curves, the Evaluate tab's ROC and score histogram.

Why apart from views: these are the app's only plotly code (imported lazily, plotly is heavy), and they draw
numbers the evaluation computed (rdexpert.evaluation.metrics), never compute their own.
"""

from __future__ import annotations

import numpy as np

from rdexpert.evaluation.metrics import roc_curve
from rdexpert.evaluation.plots import HEALTH_CURVES


def loss_figure(history: dict):
    """Loss curves and, once the trainer has run a health check, the teacher's health below them."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    health = history.get("health") or []
    fig = make_subplots(rows=2 if health else 1, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("Training loss", "Health check (held-out normal + synthetic defects)")
                        if health else ("Training loss",))
    steps = history.get("iteration", [])
    for name, values in history.items():
        if name in ("iteration", "health") or not values:
            continue
        fig.add_trace(go.Scatter(x=steps[: len(values)], y=values, mode="lines", name=f"{name} loss"), row=1, col=1)
    health_steps = [h["iteration"] for h in health]
    for key, label, _ in HEALTH_CURVES:
        if health:
            fig.add_trace(go.Scatter(x=health_steps, y=[h[key] for h in health], mode="lines+markers", name=label),
                          row=2, col=1)
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_xaxes(title_text="iteration", row=2 if health else 1, col=1)
    fig.update_layout(
        height=480 if health else 320,
        margin=dict(l=50, r=20, t=40, b=40),
        legend=dict(orientation="h", y=-0.2, x=0),
    )
    return fig


def roc_points(scores: np.ndarray, labels: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rdexpert.evaluation.metrics.roc_curve`, thinned to about ``max_points`` for plotting (the ends are kept)."""
    fpr, tpr = roc_curve(scores, labels)
    if tpr.size > max_points:
        keep = np.unique(np.r_[np.linspace(0, tpr.size - 1, max_points).astype(int), tpr.size - 1])
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr, tpr


def roc_figure(scores, labels, maps=None, masks=None, metrics: dict | None = None):
    """Image-level ROC, and pixel-level ROC when masks are given (pixels subsampled for the curve only)."""
    import plotly.graph_objects as go

    metrics = metrics or {}
    fig = go.Figure()
    fpr, tpr = roc_points(scores, labels)
    auc = metrics.get("image_auroc")
    fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name="image" + (f" (AUROC {100 * auc:.1f})" if auc else "")))
    if maps is not None and masks is not None and np.any(masks):
        m, g = np.asarray(maps).ravel(), np.asarray(masks).ravel()
        if m.size > 2_000_000:  # the curve's shape only; the AUROC in the legend is the exact one
            idx = np.random.default_rng(0).choice(m.size, 2_000_000, replace=False)
            m, g = m[idx], g[idx]
        pfpr, ptpr = roc_points(m, g)
        pauc = metrics.get("pixel_auroc")
        fig.add_trace(
            go.Scatter(x=pfpr, y=ptpr, mode="lines", name="pixel" + (f" (AUROC {100 * pauc:.1f})" if pauc else ""))
        )
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
    fig.update_layout(
        title="ROC",
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
        height=400,
        margin=dict(l=50, r=10, t=40, b=40),
        legend=dict(orientation="h", x=0, y=-0.22, yanchor="top"),  # below the plot: never over the curves
    )
    return fig


def histogram_figure(normalized_scores, labels, threshold: float = 0.5):
    import plotly.graph_objects as go

    normalized_scores, labels = np.asarray(normalized_scores), np.asarray(labels)
    fig = go.Figure()
    for value, name, colour in ((0, "normal", "#2e7d32"), (1, "defective", "#c62828")):
        sel = normalized_scores[labels == value]
        if sel.size:
            fig.add_trace(
                go.Histogram(
                    x=sel,
                    name=f"{name} ({sel.size})",
                    opacity=0.6,
                    marker_color=colour,
                    xbins=dict(start=0, size=0.025),
                )
            )
    fig.add_vline(x=threshold, line_dash="dash", annotation_text="threshold")
    fig.update_layout(
        barmode="overlay",
        title="Image scores",  # short: a phone shows the whole title
        xaxis_title=f"calibrated score (threshold {threshold:g})",
        yaxis_title="images",
        height=400,
        margin=dict(l=50, r=10, t=40, b=40),
        legend=dict(orientation="h", x=0, y=-0.22, yanchor="top"),
    )
    return fig
