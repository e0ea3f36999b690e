"""Pictures and HTML snippets for the app (plain functions: no gradio here); plotly figures are in rdexpert.app.figures."""

from __future__ import annotations

import html
import math

import cv2
import numpy as np

from rdexpert.evaluation.metrics import METRIC_NAMES, metrics_table
from rdexpert.evaluation.plots import heatmap, overlay
from rdexpert.model import VARIANTS

SCALE_NAMES = ("1/4 (stride 4)", "1/8 (stride 8)", "1/16 (stride 16)")

# One or two sentences per inference-time switch (docs/design.md §3.4), shown under each ablation panel.
SWITCH_TEXT = {
    ("teacher", "gated"): "The default: the student is compared with the trained teacher, and GII injects teacher "
    "detail only where student and teacher agree. This is what Inspect shows.",
    ("expert", "gated"): "Same student, compared with the frozen pretrained expert instead of the trained teacher. "
    "What changes is what the teacher's training added: its features turn away from the expert's "
    "inside defects, so the teacher map usually separates defects more sharply.",
    ("teacher", "open"): "Gate open (s = 1): all teacher detail is injected, as a plain skip connection would. "
    "The defect's own features leak into the reconstruction, so the map usually gets weaker "
    "on the defect.",
    ("teacher", "closed"): "Gate closed (s = 0): no teacher detail reaches the decoder, like plain RD without skips. "
    "Fine normal detail is lost, so normal texture and edges tend to light up too "
    "(false positives).",
    ("expert", "open"): "Expert reference with the gate open: both switches away from the default at once.",
    ("expert", "closed"): "Expert reference with the gate closed: both switches away from the default at once.",
}

# What the eye should check in each panel, against the default map.
LOOK_AT = {
    ("teacher", "gated"): "the defect should be one compact hot region while normal texture stays cool; the "
    "other panels are compared with this map.",
    ("expert", "gated"): "is the defect fainter or more smeared than in the default? That loss of contrast is what "
    "training the teacher bought.",
    ("teacher", "open"): "the defect itself: with all teacher detail injected it cools down (the anomaly leaks "
    "through the skip), so the difference sits on the defect.",
    ("teacher", "closed"): "the normal background and edges: without teacher detail they warm up (false "
    "positives), so the difference is spread over normal texture.",
    ("expert", "open"): "both effects at once; compare with the single-switch panels.",
    ("expert", "closed"): "both effects at once; compare with the single-switch panels.",
}

GATE_TEXT = (
    "**The GII gate s at each gated decoder scale.** s is the per-pixel cosine similarity between the student's "
    "decoded feature and the teacher's feature at that scale; where s is high (normal content) the teacher's "
    "detail is injected, where it is low (a defect) it is held back. Colours: yellow s = 1, dark blue s ≤ 0."
)

SKIP_TEXT = {"none": "no skips", "gated": "gated GII skips", "plain": "plain (ungated) skips"}


def variant_text(name: str) -> str:
    """What a variant trains, in a few words, read from its :class:`~rdexpert.model.Variant` flags."""
    variant = VARIANTS.get(name)
    if variant is None:
        return ""
    teacher = "trained teacher" if variant.train_teacher else "frozen teacher"
    parts = [teacher + (" + expert targets" if variant.expert_targets else "")]
    if variant.augmented_student:
        parts.append("augmented student")
    parts.append(SKIP_TEXT[variant.skip])
    return ", ".join(parts)


def switch_note(variant: str | None, reference: str, gate: str) -> str:
    """Why a switch has no effect for some variants (from the variant's flags)."""
    flags = VARIANTS.get(variant)
    if flags is None:
        return ""
    notes = []
    if not flags.train_teacher and reference == "expert":
        notes.append("this variant's teacher *is* the frozen expert, so the reference switch changes nothing")
    if flags.skip == "none" and gate != "gated":
        notes.append("this variant has no GII skips, so the gate switch changes nothing")
    if flags.skip == "plain" and gate != "gated":
        notes.append("this variant uses plain skips, which have no gate")
    return ("Note: " + "; ".join(notes) + ".") if notes else ""


REFERENCE_NAMES = {"teacher": "trained teacher", "expert": "frozen expert"}


def default_setting(default_reference: str | None) -> tuple[str, str]:
    """(reference, gate) of what Inspect shows for a checkpoint: its default reference, gate gated."""
    return (default_reference or "teacher", "gated")


def switch_text(variant: str | None, reference: str, gate: str, default_reference: str | None = "teacher") -> str:
    """What one switch setting does, for this variant and this checkpoint's default (what Inspect shows).

    Read from the variant's flags, so a panel never promises what the model does not have: for ``rd`` (the teacher
    is the frozen expert, no skips) the default panel says so, instead of "the trained teacher" and "GII".
    """
    flags = VARIANTS.get(variant)
    default = default_setting(default_reference)
    trained = flags is None or flags.train_teacher
    skip = flags.skip if flags is not None else "gated"
    parts = ["**This checkpoint's default: what Inspect shows.**" if (reference, gate) == default else ""]
    if not trained:
        parts.append("The student is compared with the teacher, which in this variant is the frozen expert itself "
                     "(it is not trained): the teacher and expert references give the same map.")
    elif reference == "teacher":
        parts.append("The student is compared with the trained teacher"
                     + (", not with the frozen expert this checkpoint scores against by default (its health check "
                        "found the trained teacher worse)." if default[0] == "expert" else "."))
    else:
        parts.append("The student is compared with the frozen pretrained expert instead of the trained teacher: "
                     "what changes is what the teacher's training added (its features turn away from the expert's "
                     "inside defects, which usually separates defects more sharply)"
                     + ("; this checkpoint scores against the expert by default, because its health check found "
                        "the trained teacher worse." if default[0] == "expert" else "."))
    if skip == "none":
        parts.append("This variant has no skips: no teacher detail reaches the decoder, whatever the gate says.")
    elif skip == "plain":
        parts.append("This variant's skips are plain (ungated): all teacher detail reaches the decoder, whatever "
                     "the gate says.")
    elif gate == "gated":
        parts.append("GII injects teacher detail only where student and teacher agree.")
    elif gate == "open":
        parts.append("Gate open (s = 1): all teacher detail is injected, as a plain skip connection would; the "
                     "defect's own features leak into the reconstruction, so the map usually gets weaker on the defect.")
    else:
        parts.append("Gate closed (s = 0): no teacher detail reaches the decoder, like plain RD without skips; fine "
                     "normal detail is lost, so normal texture and edges tend to light up too (false positives).")
    return " ".join(part for part in parts if part)


def look_at(variant: str | None, reference: str, gate: str, default_reference: str | None = "teacher") -> str:
    """What the eye should check in one panel, against the default map (nothing, where the switch does nothing)."""
    default = default_setting(default_reference)
    if (reference, gate) == default:
        return LOOK_AT[("teacher", "gated")]
    if switch_note(variant, reference, gate) and (reference == default[0] or gate == "gated"):
        return "nothing should change: for this variant this switch does nothing, so the difference from the " \
               "default map is about 0."
    if (reference, gate) == ("teacher", "gated"):  # the default is the expert
        return "is the defect sharper than against the expert? That is what training the teacher should buy; " \
               "for this checkpoint the health check found it did not."
    return LOOK_AT[(reference, gate)]


DISPLAY_SIZE = 256  # small models' pictures are enlarged to this for the page


def display(image: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """Enlarge a picture smaller than ``size`` (bilinear) so 64/128 px models stay readable."""
    h, w = image.shape[:2]
    if max(h, w) >= size:
        return image
    scale = size / max(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)


def at_aspect(image: np.ndarray, original_size: tuple[int, int] | None) -> np.ndarray:
    """The picture the network saw brought to the aspect ratio of the image as given, so a 4:3 part is shown as
    4:3 and not squashed (None: leave it as it is).

    A "squash" model's input is square and is stretched back; a "pad" model's picture region (the padding
    already cut off, :class:`rdexpert.inference.predictor.Prediction`) has that aspect ratio up to a pixel's rounding.
    Maps drawn over the result are resized to it (:func:`fused_overlay`, :func:`scale_overlays`).
    """
    if not original_size:
        return image
    oh, ow = original_size
    h, w = image.shape[:2]
    side = max(h, w)
    target = (side, max(1, round(side * oh / ow))) if ow >= oh else (max(1, round(side * ow / oh)), side)
    if target == (w, h):
        return image
    return cv2.resize(image, target, interpolation=cv2.INTER_AREA if target[0] * target[1] < w * h else cv2.INTER_LINEAR)


def _upsample(image: np.ndarray, maps: list[np.ndarray], size: int = DISPLAY_SIZE):
    """The picture enlarged for display, and the maps resized to match it (whatever their own shape)."""
    big = display(image, size)
    hw = big.shape[1], big.shape[0]
    return big, [m if m.shape[:2] == big.shape[:2] else cv2.resize(m.astype(np.float32), hw, interpolation=cv2.INTER_LINEAR)
                 for m in maps]


def fused_overlay(image: np.ndarray, normalized_map: np.ndarray, threshold: float) -> np.ndarray:
    """Heat map of the calibrated map (0..1, the calibrated threshold at 0.5) plus the contour at ``threshold``."""
    image, (normalized_map,) = _upsample(image, [normalized_map])
    return overlay(image, normalized_map, 0.0, 1.0, threshold)


def truth_outline(picture: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The picture (enlarged like the maps) with the ground-truth defect ``mask`` outlined in green; as it is
    without a mask."""
    big = display(picture)
    if mask is None or not np.any(mask):
        return big
    mask = cv2.resize(np.asarray(mask, np.uint8), (big.shape[1], big.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(np.ascontiguousarray(big.copy()), contours, -1, (0, 200, 0), 2)


def scale_overlays(image: np.ndarray, scale_maps: list[np.ndarray]) -> list[np.ndarray]:
    """The per-scale maps on one shared colour range (0 .. the largest value of the three) over the image."""
    top = max(float(np.max(m)) for m in scale_maps) if scale_maps else 1.0
    image, scale_maps = _upsample(image, scale_maps)
    return [overlay(image, m, 0.0, max(top, 1e-6), None) for m in scale_maps]


def colour_bar(width: int, colormap: str = "viridis", labels=((0.0, "s = 0"), (0.5, "0.5"), (1.0, "1"))) -> np.ndarray:
    """A horizontal colour bar, ``width`` pixels wide, 0 at the left and 1 at the right, with its values below."""
    bar = heatmap(np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (12, 1)), 0.0, 1.0, colormap)
    legend = np.full((20, width, 3), 255, np.uint8)
    for value, text in labels:
        (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)
        x = int(np.clip(value * (width - 1) - w / 2, 1, width - w - 1))
        cv2.putText(legend, text, (x, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (33, 33, 33), 1, cv2.LINE_AA)
    return np.vstack([np.full((4, width, 3), 255, np.uint8), bar, legend])


def gate_picture(s: np.ndarray, image: np.ndarray | None = None, size: int = DISPLAY_SIZE) -> np.ndarray:
    """The gate s (a coarse H x W grid) colour-mapped on 0..1, its cells kept visible, over the grey image it was
    computed on (where the gate holds back: on the defect), with a colour bar below saying what the colours mean."""
    if image is not None:
        grey = cv2.cvtColor(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        grey = display(grey, size)
        h, w = grey.shape[:2]
        cells = cv2.resize(heatmap(s, 0.0, 1.0, "viridis"), (w, h), interpolation=cv2.INTER_NEAREST)
        picture = cv2.addWeighted(grey, 0.45, cells, 0.55, 0)
    else:
        scale = max(1, size // max(s.shape))
        picture = cv2.resize(heatmap(s, 0.0, 1.0, "viridis"), (s.shape[1] * scale, s.shape[0] * scale),
                             interpolation=cv2.INTER_NEAREST)
    return np.vstack([picture, colour_bar(picture.shape[1])])


def difference_line(normalized_map: np.ndarray, default_map: np.ndarray) -> str:
    """How far a switch moved the map from the default: mean and max of |map − default|, in calibrated units."""
    diff = np.abs(np.asarray(normalized_map, np.float32) - np.asarray(default_map, np.float32))
    return (
        f"Difference from the default map (|this − teacher · gated|, calibrated units, threshold 0.5): "
        f"mean **{diff.mean():.3f}**, max **{diff.max():.3f}**."
    )


NOT_THE_PRODUCT = "NOT THE TRAINED PRODUCT"


def verdict_html(
    normalized_score: float,
    threshold: float,
    score: float | None = None,
    raw_threshold: float | None = None,
    extra: str = "",
    out_of_distribution: bool = False,
) -> str:
    """A coloured verdict with a bar of the calibrated score against the threshold; the score is not clipped, so
    the text also says how many times the threshold it is (a wrong product reads far above a real defect).

    ``out_of_distribution``: the image is not the trained product, so there is no defect verdict to give: the
    headline says so (orange, as the warning above it), never a red ANOMALOUS; the score stays, in grey, as a
    number only (``data-verdict`` keeps what the score alone would say, for scripts).
    """
    anomalous = normalized_score >= threshold
    colour = "#c62828" if anomalous else "#2e7d32"
    word = "ANOMALOUS" if anomalous else "NORMAL"
    if out_of_distribution:
        return (
            f'<div class="rdx-verdict" data-verdict="{word.lower()}" data-ood="true">'
            f'<div style="font-size:1.4em;font-weight:700;color:#ef6c00">{NOT_THE_PRODUCT}</div>'
            f'<div style="color:#555">no defect verdict: the score ({normalized_score:.3f}, '
            f"{normalized_score / max(threshold, 1e-9):.1f} × the threshold {threshold:.2f}) measures how far the "
            f"image is from the trained product, not a defect</div>"
            f'<div style="color:#555">{extra}</div></div>'
        )
    pct = 100 * min(max(normalized_score, 0.0), 1.0)
    tpct = 100 * min(max(threshold, 0.0), 1.0)
    raw = ""
    if score is not None:
        raw = f" · raw score {score:.4f}"
        if raw_threshold is not None:
            raw += f" (calibrated raw threshold {raw_threshold:.4f})"
    return (
        f'<div class="rdx-verdict" data-verdict="{word.lower()}">'
        f'<div style="font-size:1.4em;font-weight:700;color:{colour}">{word}</div>'
        f"<div>calibrated score <b>{normalized_score:.3f}</b> {'≥' if anomalous else '<'} threshold "
        f"<b>{threshold:.2f}</b> (<b>{normalized_score / max(threshold, 1e-9):.1f} × threshold</b>){html.escape(raw)}</div>"
        f'<div style="position:relative;height:14px;background:#e0e0e0;border-radius:7px;margin:6px 0;max-width:420px">'
        f'<div style="width:{pct:.1f}%;height:100%;background:{colour};border-radius:7px"></div>'
        f'<div style="position:absolute;left:{tpct:.1f}%;top:-3px;width:2px;height:20px;background:#000"></div></div>'
        f'<div style="color:#555">{extra}</div></div>'
    )


def truth_html(truth: str | None, anomalous: bool) -> str:
    """For an image whose label is known (an example, an evaluated image): its ground truth beside the model's verdict, and whether
    they agree; "" when the label is not known (an upload)."""
    if not truth:
        return ""
    word = "ANOMALOUS" if anomalous else "NORMAL"
    agrees = (truth == "defective") == anomalous
    return (
        f'<div class="rdx-truth" data-agrees="{str(agrees).lower()}">Labelled image — ground truth: '
        f"<b>{html.escape(truth)}</b> · model: <b>{word}</b> ({'agrees' if agrees else 'disagrees'})</div>"
    )


def ood_warning_html(product: str | None, ood_score: float | None) -> str:
    """The out-of-distribution warning: this image is not the trained product, so the verdict says nothing.

    Worded apart from a defect verdict: "anomalous" means "this product, defective"; this means "not this
    product at all" (rdexpert.inference.ood).
    """
    product = html.escape(product or "the trained product")
    how_far = "" if ood_score is None else f" (out-of-distribution score {ood_score:.1f}; above 1 = not the product)"
    return (
        f'<div class="rdx-ood" data-ood="true" style="border-left:4px solid #ef6c00;padding:6px 10px;'
        f'background:#fff3e0;margin-bottom:6px"><b>Not what this model was trained on.</b> This does not look '
        f"like a {product} image the model was trained on: the verdict below is not meaningful{how_far}. "
        f"The model knows only {product}; inspect other products with a checkpoint trained on them.</div>"
    )


def message_html(text: str, kind: str = "error") -> str:
    colour = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0", "ok": "#2e7d32"}[kind]
    return (
        f'<div class="rdx-message rdx-{kind}" style="border-left:4px solid {colour};padding:6px 10px;'
        f'background:#fafafa">{html.escape(text)}</div>'
    )


def progress_html(
    iteration: int, total: int, status: str, elapsed: float, seconds_per_iteration: float | None = None
) -> str:
    """The progress bar and line; the time left is the measured seconds per iteration × the iterations left,
    and is said only while training (not once cancelled, failed or done)."""
    rate = seconds_per_iteration
    eta = ""
    if status == "training" and iteration < total:
        eta = f" · about {rate * (total - iteration):.0f} s left" if rate else " · measuring the speed"
    speed = f" · {rate:.2f} s/iteration" if rate else ""
    return (
        f'<div class="rdx-progress" data-status="{html.escape(status)}">'
        f'<progress value="{iteration}" max="{total}" style="width:100%;height:18px"></progress>'
        f"<div><b>{html.escape(status)}</b> · iteration {iteration} / {total} · {elapsed:.0f} s{speed}{eta}</div></div>"
    )


def escape_at(text: str) -> str:
    """"&#64;" for "@": keeps a metric name like "AUPRO@0.3" from being turned into an e-mail link."""
    return text.replace("@", "&#64;")


def metric_values(metrics: dict, keys=METRIC_NAMES) -> str:
    """"I-AUROC 97.1, P-AUROC 98.0, ...": the ``keys`` that ``metrics`` holds as numbers, in percent."""
    return ", ".join(
        f"{escape_at(METRIC_NAMES[k])} {100 * metrics[k]:.1f}"
        for k in keys
        if isinstance(metrics.get(k), (int, float)) and not math.isnan(metrics[k])
    )


def setting_metrics_line(metrics: dict, reference: str, gate: str) -> str:
    """Stored test metrics of one inference setting (a config's ``metrics["teacher/open"]`` ...), as one line."""
    section = metrics.get(f"{reference}/{gate}")
    if not isinstance(section, dict):
        return ""
    shown = metric_values(section, ("image_auroc", "pixel_auroc", "aupro"))
    if not shown:
        return ""
    where = f" ({section['images']} test images)" if section.get("images") else ""
    return f"Stored test metrics of this setting{where}: {shown}."


NO_METRICS = "_no stored metrics (`rdexpert test --save-metrics` stores them in a checkpoint's config.json)_"


def metrics_markdown(rows: dict[str, dict[str, float]], first_column: str = "model") -> str:
    """:func:`rdexpert.evaluation.metrics.metrics_table` for the page: "&#64;" in the header, a note when there is nothing."""
    table = metrics_table(rows, first_column)
    if not table:
        return NO_METRICS
    header, _, body = table.partition("\n")
    return escape_at(header) + "\n" + body.rstrip("\n")


# -- a finished fine-tune, in plain words -------------------------------------------------------
HEALTH_NOTE = (
    "**Health check** (lower plot, when shown): every so often the trainer pastes synthetic defects into held-out "
    "normal images and measures how well each reference separates the defect pixels from the rest (pixel AUROC: "
    "0.5 is chance, 1 is perfect). At the end the model scores against whichever holds up: the trained teacher, "
    "unless it does clearly worse than the frozen expert."
)


def reference_sentence(default_reference: str | None, health: dict) -> str:
    """Which reference a trained model scores against and why, in plain words (from config.json's ``health``)."""
    final = health.get("final") or {}
    teacher, expert = final.get("separation_teacher"), final.get("separation_expert")
    numbers = (f" (synthetic-defect pixel AUROC: teacher {teacher:.2f}, expert {expert:.2f}; 0.5 is chance)"
               if isinstance(teacher, (int, float)) and isinstance(expert, (int, float)) else "")
    if default_reference == "expert":
        return ("**Scores against the frozen expert.** On the health check the trained teacher separated synthetic "
                f"defects worse than the frozen expert{numbers}, so this model compares the student with the expert: "
                "it still works as a detector, but training the teacher did not help on these images (more normal "
                "images or more iterations may).")
    if not health:
        return ""
    return (f"**Scores against the trained teacher**: it held up on the health check{numbers}.")


def calibration_sentence(e: dict) -> str:
    """What the calibration data says about the threshold, in plain words (``Calibration.estimates()``)."""
    if not e.get("normal_images"):
        return ""
    text = (f"**Threshold**: set on {e['normal_images']} held-out normal image(s); {e.get('normal_flagged', 0)} of "
            f"them score above it (with so few images the false-alarm rate is only known to be at most "
            f"{100 * e.get('false_positive_rate_upper95', 1.0):.0f} %).")
    if e.get("synthetic_anomalies"):
        faint = (f"; of {e['faint_anomalies']} faint ones, {e.get('faint_missed', 0)}" if e.get("faint_anomalies")
                 else "")
        text += (f" Of {e['synthetic_anomalies']} synthetic defects, {e.get('synthetic_missed', 0)} score below it"
                 f"{faint} (an estimate of how many real defects would be missed: synthetic defects are only a "
                 "proxy).")
    return text
