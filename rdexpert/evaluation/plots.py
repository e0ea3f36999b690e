"""Pictures: anomaly-map overlays and training curves."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rdexpert.checkpoint.io import atomic_write  # noqa: E402


def heatmap(anomaly_map: np.ndarray, vmin: float, vmax: float, colormap: str = "jet") -> np.ndarray:
    """Colour a 2-D map into HxWx3 uint8 RGB, scaled between ``vmin`` and ``vmax``."""
    scaled = np.clip((anomaly_map - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    return (matplotlib.colormaps[colormap](scaled)[..., :3] * 255).astype(np.uint8)


def overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    vmin: float,
    vmax: float,
    threshold: float | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend a heat map over an RGB uint8 image; draw the contour where the map crosses ``threshold``."""
    h, w = image.shape[:2]
    if anomaly_map.shape != (h, w):
        anomaly_map = cv2.resize(anomaly_map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    blended = cv2.addWeighted(image, 1 - alpha, heatmap(anomaly_map, vmin, vmax), alpha, 0)
    if threshold is not None:
        region = (anomaly_map >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(blended, contours, -1, (255, 255, 255), max(1, round(min(h, w) / 256)))
    return blended


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    def write(tmp: str) -> None:
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"could not encode {path} as PNG")
        Path(tmp).write_bytes(data.tobytes())

    return atomic_write(path, write)


def plot_loss_history(history: dict, path: str | Path, window: int = 25) -> Path:
    """Plot each loss against iteration (raw and a running mean) and, when the history holds
    health checks (rdexpert.training.health), the teacher's health below it; saved as PNG."""
    health = history.get("health") or []
    fig, axes = plt.subplots(2 if health else 1, 1, figsize=(7, 6.5 if health else 4), squeeze=False)
    ax = axes[0, 0]
    for name, values in history.items():
        if name in ("iteration", "health") or not values:
            continue
        values = np.asarray(values, dtype=float)
        steps = np.asarray(history["iteration"][: len(values)])
        line = ax.plot(steps, values, alpha=0.25)[0]
        if len(values) >= window:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, color=line.get_color(), label=name)
        else:
            line.set_label(name)
            line.set_alpha(1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if health:
        _plot_health(axes[1, 0], health)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return Path(path)


HEALTH_CURVES = (  # (key, label, axis): what the Trainer's health checks plot
    ("separation_teacher", "synthetic-defect pixel AUROC, teacher as reference", "left"),
    ("separation_expert", "synthetic-defect pixel AUROC, expert as reference", "left"),
    ("agreement", "teacher-expert distance on normal images", "right"),
)


def _plot_health(ax, health: list[dict]) -> None:
    steps = [h["iteration"] for h in health]
    right = ax.twinx()
    for key, label, side in HEALTH_CURVES:
        target = ax if side == "left" else right
        target.plot(steps, [h[key] for h in health], marker="o", label=label,
                    linestyle="--" if side == "right" else "-", color={"left": None, "right": "grey"}[side])
    ax.set_xlabel("iteration")
    ax.set_ylabel("pixel AUROC (held-out check)")
    right.set_ylabel("1 - cos, normal pixels")
    ax.set_title("Health check (held-out normal images + synthetic defects; no test data)", fontsize=9)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
