"""What every tab module shares: the page's configuration, :func:`bind`, and the examples gallery.

Handlers are module-level functions that take what they work on (registry,
config, caches) as their first arguments, so tests can call them without a
browser; :func:`bind` fixes those arguments when a tab wires them to events.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from .finetune import FineTuneLimits
from .registry import Registry
from .uploads import UploadLimits


@dataclass
class AppConfig:
    """What the page is built from."""

    registry: Registry
    examples: list[tuple[str, str]] = field(default_factory=list)  # (path, caption)
    workdir: Path = Path("runs/app")
    search_roots: list[Path] = field(default_factory=list)  # where relative dataset roots are looked up
    upload_limits: UploadLimits = UploadLimits()
    finetune_limits: FineTuneLimits = FineTuneLimits()
    title: str = "RD with Expert — anomaly detection"

    @property
    def example_paths(self) -> list[str]:
        return [path for path, _ in self.examples]


def bind(fn, *bound):
    """``fn`` with its first arguments fixed, in a form gradio reads like a plain function.

    ``functools.partial`` is not enough: gradio takes the endpoint name from
    ``__name__``, finds ``gr.Request``/``gr.SelectData`` parameters through the
    type hints, and streams only from generator functions. So the handler keeps
    ``fn``'s name, the remaining parameters with their resolved hints, and is a
    generator function when ``fn`` is one.
    """
    if inspect.isgeneratorfunction(fn):

        def handler(*args, **kwargs):
            yield from fn(*bound, *args, **kwargs)

    else:

        def handler(*args, **kwargs):
            return fn(*bound, *args, **kwargs)

    signature = inspect.signature(functools.partial(fn, *bound))
    hints = typing.get_type_hints(fn)
    handler.__name__ = handler.__qualname__ = fn.__name__
    handler.__doc__ = fn.__doc__
    handler.__signature__ = signature
    handler.__annotations__ = {name: hints[name] for name in signature.parameters if name in hints}
    return handler


def examples_gallery(cfg: AppConfig, label: str, elem_id: str, columns: int, height: int, **kwargs) -> gr.Gallery:
    """The example images as clickable thumbnails (Inspect and Ablations offer the same ones)."""
    return gr.Gallery(
        cfg.examples,
        label=label,
        columns=columns,
        height=height,
        allow_preview=False,
        elem_id=elem_id,
        object_fit="cover",
        **kwargs,
    )
