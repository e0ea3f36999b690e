"""The top of the page: title, start-up messages and the checkpoint picker every model tab uses."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from rdexpert.app import views
from rdexpert.app.common import AppConfig
from rdexpert.app.registry import Registry
from rdexpert.app.sessions import Sessions
from rdexpert.inference.calibration import Calibration

INTRO = (
    "Reverse distillation with an **Expert–Teacher–Student** network and **Guided Information Injection** "
    "(GII): a frozen pretrained *expert*, a *teacher* trained to keep normal features close to the expert's "
    "and push defects away, and a *student* that rebuilds anomaly-free features. Where the student cannot "
    "rebuild the teacher's features, the image is anomalous."
)


def first_choice(registry: Registry) -> str | None:
    """The checkpoint selected when the page opens: a shipped one when there is one."""
    choices = registry.choices()
    shipped = [k for k in choices if registry.get(k).source == "shipped"]
    return (shipped or choices or [None])[0]


NO_MODEL = ("No model is available right now, so Inspect, Ablations and Evaluate have nothing to run; you can "
            "fine-tune a model of your own in the Fine-tune tab.")


def banner(registry: Registry) -> str:
    """Start-up problems (no usable checkpoint, broken ones, an unreachable Hub repository) as warnings above the
    tabs, in the words a visitor needs (:attr:`Registry.notices`); the operator's details (flags, exceptions) are
    in the server's log (:attr:`Registry.messages`)."""
    parts = []
    if not registry.choices():
        parts.append(views.message_html(NO_MODEL, "warning"))
    parts += [views.message_html(m, "warning") for m in registry.all_notices()]
    return "".join(parts)


def describe(registry: Registry, key: str | None) -> str:
    """One line about the selected checkpoint, with its stored metrics."""
    if not key:
        return "_no checkpoint selected_"
    try:
        entry = registry.get(key)
    except KeyError:
        return f"_unknown checkpoint `{key}`: pick one from the list_"
    text = entry.describe()
    if entry.metrics:
        text += f"<br>stored metrics: {views.metric_values(entry.metrics)}"
    try:
        calibration = Calibration.from_dict(entry.info.calibration)
        text += f"<br>{calibration.summary(warn=False)}"
        warning = calibration.miss_warning()
        if warning:
            text += f"<br>**⚠ {warning}**"
    except ValueError:
        pass
    health = entry.info.health
    if health.get("reason"):
        text += f"<br>default reference: **{entry.info.default_reference}** — {health['reason']}"
    return text


def describe_selected(sessions: Sessions, key: str | None, request: gr.Request | None = None) -> str:
    return describe(sessions.registry_for(request), key)


@dataclass
class Header:
    checkpoint: gr.Dropdown
    checkpoint_info: gr.Markdown
    banner: gr.HTML


def build(cfg: AppConfig) -> Header:
    """Title, banner and checkpoint picker (inside the page's Blocks)."""
    gr.Markdown(f"# {cfg.title}\n{INTRO}")
    banner_html = gr.HTML(banner(cfg.registry), elem_id="rdx-banner")
    with gr.Row(elem_id="rdx-header-row"):  # the two stack on a phone (each column has a minimum width)
        with gr.Column(scale=3, min_width=300):
            checkpoint = gr.Dropdown(
                cfg.registry.choices(),
                value=first_choice(cfg.registry),
                label="Checkpoint",
                info="Used by Inspect, Ablations and Evaluate",
                elem_id="rdx-checkpoint",
            )
        with gr.Column(scale=2, min_width=300):
            checkpoint_info = gr.Markdown(elem_id="rdx-checkpoint-info")
    return Header(checkpoint, checkpoint_info, banner_html)
