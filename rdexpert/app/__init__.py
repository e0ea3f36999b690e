"""The Gradio app of rdexpert (``python app.py``): inspect images, walk through ablations, fine-tune, evaluate.

The pieces that are plain Python (upload validation, fine-tune jobs, the
checkpoint registry, pictures and plots) live in their own modules so tests can
call them without a browser; each tab's components and handlers are in its own
``tab_*`` module, :mod:`rdexpert.app.ui` assembles them into the page, and
:mod:`rdexpert.app.server` builds and launches it.
"""

from importlib.util import find_spec

APP_EXTRA = ("gradio", "plotly")  # what pyproject's [app] extra adds to the core package


def _installed(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: None in sys.modules (its import is blocked)
        return False


_missing = [name for name in APP_EXTRA if not _installed(name)]
if _missing:  # one line naming the extra, instead of gradio's (or, later, plotly's) bare ModuleNotFoundError
    raise ModuleNotFoundError(
        f"the rdexpert app needs {' and '.join(_missing)}, not installed here: pip install \"rdexpert[app]\" "
        "(or pip install -r requirements.txt)", name=_missing[0])

from rdexpert.app.server import build_app, main, parse_args  # noqa: E402

__all__ = ["APP_EXTRA", "build_app", "main", "parse_args"]
