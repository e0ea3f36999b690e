"""What every tab module shares: the page's configuration, :func:`bind`, and the examples galleries.

Handlers are module-level functions that take what they work on (registry,
config, caches) and the components they fill as their first arguments, so
tests can call them without a browser; :func:`bind` fixes those arguments when
a tab wires them to events. A handler with several outputs returns
``{component: value}``; gradio leaves the outputs it does not name unchanged.
Handlers that use checkpoints take the session store and the ``gr.Request``:
the checkpoints a page may use are the shared ones plus its own fine-tunes
(:mod:`rdexpert.app.sessions`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from rdexpert.app.examples import ExampleSet
from rdexpert.app.finetune import FineTuneLimits
from rdexpert.app.registry import Registry
from rdexpert.app.sessions import Sessions
from rdexpert.app.uploads import UploadLimits

log = logging.getLogger("rdexpert.app")

FAILED = (
    "Something went wrong on the server ({kind}); your request was not completed. "
    "The details were written to the server's log."
)


@dataclass
class AppConfig:
    """What the page is built from."""

    registry: Registry
    examples: ExampleSet = field(default_factory=ExampleSet)  # per product (assets/examples/<product>/)
    workdir: Path = Path("runs/app")
    search_roots: list[Path] = field(default_factory=list)  # where relative dataset roots are looked up
    upload_limits: UploadLimits = UploadLimits()
    finetune_limits: FineTuneLimits = FineTuneLimits()
    title: str = "RD with Expert — anomaly detection"
    workdir_budget_mb: float | None = 500.0  # finished sessions' folders beyond this are deleted, oldest first
    workdir_max_age_hours: float | None = 24.0  # and those older than this
    sessions: Sessions | None = None  # made from registry and workdir when not given

    def __post_init__(self):
        self.workdir = Path(self.workdir)
        if self.sessions is None:
            self.sessions = Sessions(self.registry, self.workdir)


def failure_message(error: BaseException) -> str:
    """What a visitor reads when a handler failed unexpectedly (the traceback goes to the log)."""
    return FAILED.format(kind=type(error).__name__)


def bind(fn, *bound):
    """``fn`` with its first arguments fixed, in a form gradio reads like a plain function.

    ``functools.partial`` is not enough: gradio takes the endpoint name from
    ``__name__``, finds ``gr.Request``/``gr.SelectData`` parameters through the
    type hints, and streams only from generator functions. So the handler keeps
    ``fn``'s name, the remaining parameters with their resolved hints, and is a
    generator function when ``fn`` is one.

    An exception the handler did not turn into a message itself is logged with
    its traceback and reaches the page as :func:`failure_message` (a
    ``gr.Error``), never as gradio's bare "Error" nor with server paths.
    """
    if inspect.isgeneratorfunction(fn):

        def handler(*args, **kwargs):
            try:
                yield from fn(*bound, *args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:
                log.exception("handler %s failed", fn.__name__)
                raise gr.Error(failure_message(error), title="Request failed") from None

    else:

        def handler(*args, **kwargs):
            try:
                return fn(*bound, *args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:
                log.exception("handler %s failed", fn.__name__)
                raise gr.Error(failure_message(error), title="Request failed") from None

    signature = inspect.signature(functools.partial(fn, *bound))
    hints = typing.get_type_hints(fn)
    handler.__name__ = handler.__qualname__ = fn.__name__
    handler.__doc__ = fn.__doc__
    handler.__signature__ = signature
    handler.__annotations__ = {name: hints[name] for name in signature.parameters if name in hints}
    return handler


def key_category(registry: Registry, key: str | None) -> str | None:
    """The product (``dataset.category``) of checkpoint ``key``; None when there is none or it is unknown."""
    try:
        return registry.get(key).category if key else None
    except KeyError:
        return None


def examples_gallery(cfg: AppConfig, category: str | None, template: str, elem_id: str, columns: int, height,
                     **kwargs) -> gr.Gallery:
    """The examples of ``category``'s product as clickable thumbnails (Inspect and Ablations offer the same ones);
    ``template``: the label, with ``{what}`` for what is shown."""
    return pictures_gallery(template.format(what=cfg.examples.label(category)), elem_id, columns, height,
                            value=cfg.examples.gallery(category), object_fit="cover", fit_columns=True, **kwargs)


def show_examples(gallery: gr.Gallery, template: str, sessions: Sessions, examples: ExampleSet, key: str | None,
                  request: gr.Request | None = None) -> dict:
    """Another checkpoint: ``gallery`` shows its product's examples (labelled by ``template``)."""
    category = key_category(sessions.registry_for(request), key)
    return {gallery: gr.Gallery(value=examples.gallery(category), label=template.format(what=examples.label(category)))}


def examples_follow(checkpoint: gr.Dropdown, gallery: gr.Gallery, template: str, sessions: Sessions,
                    examples: ExampleSet) -> None:
    """Wire ``gallery`` to show the selected checkpoint's product's examples as soon as the checkpoint changes (no
    queue: before any model is loaded)."""
    checkpoint.change(bind(show_examples, gallery, template, sessions, examples), checkpoint, gallery, queue=False,
                      show_progress="hidden", api_visibility="private")


def clicked_example(sessions: Sessions, examples: ExampleSet, key: str | None, index: int,
                    request: gr.Request | None = None):
    """The example at ``index`` of the gallery shown for checkpoint ``key`` (the same list :func:`show_examples`
    put there)."""
    return examples.for_category(key_category(sessions.registry_for(request), key))[index]


def pictures_gallery(label: str, elem_id: str, columns: int, height: int, **kwargs) -> gr.Gallery:
    """Pictures side by side, without a preview to click into; results are shown whole (not cropped)."""
    kwargs.setdefault("fit_columns", False)
    kwargs.setdefault("object_fit", "contain")
    return gr.Gallery(label=label, columns=columns, height=height, allow_preview=False, elem_id=elem_id, **kwargs)


def scroll_js(*selectors: str) -> str:
    """JavaScript for an event's ``js``: bring the answer (``selectors[0]``; the others are fallbacks) to the top of
    the window, unless its top is already on screen, above the last 160 pixels.

    Gradio's own ``scroll_to_output`` does nothing in the gradio this app runs on (6.31: the page's status
    trackers never receive it), so :func:`reveal` attaches this to the events instead. An answer in another tab
    (an Evaluate row opened in Inspect) may not be laid out when this runs, on a busy machine for a while: so it
    looks every 100 ms for up to 10 s until the answer is shown, scrolls once, and stops. A fallback (the answer
    when no tab switches) is scrolled to at most once meanwhile, so nothing keeps moving the page under a person.
    """
    return (
        "(...args) => { const sel = " + repr(list(selectors)) + ";"
        " const shown = (s) => { const e = document.querySelector(s); return e && e.getClientRects().length > 0 ? e : null; };"
        " const bring = (e) => { const top = e.getBoundingClientRect().top;"
        " if (top < 0 || top > window.innerHeight - 160)"
        " window.scrollTo({top: Math.max(0, top + window.scrollY - 8), behavior: 'instant'}); };"
        " let tries = 0, fellBack = false;"
        " const look = () => { const e = shown(sel[0]); if (e) { bring(e); return; }"
        " if (!fellBack) { const f = sel.slice(1).map(shown).find((x) => x); if (f) { bring(f); fellBack = true; } }"
        " if (tries++ < 100) setTimeout(look, 100); };"
        " look(); return args; }"
    )


def reveal(trigger, *selectors: str, event: str = "click") -> None:
    """When ``trigger``'s ``event`` fires (a click on an example, Start), the answer (the first shown of
    ``selectors``) comes into view at once: its place is on screen while the request runs, and the answer appears
    there. ``trigger`` may also be a dependency (``event="then"``): the answer is brought into view when the
    request has finished (it may be in another tab)."""
    listener = getattr(trigger, event)
    listener(None, None, None, js=scroll_js(*selectors), queue=False, show_progress="hidden",
             api_visibility="private")
