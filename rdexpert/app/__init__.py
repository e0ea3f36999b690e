"""The Gradio app of rdexpert (``python app.py``): inspect images, walk through ablations, fine-tune, evaluate.

The pieces that are plain Python (upload validation, fine-tune jobs, the
checkpoint registry, pictures and plots) live in their own modules so tests can
call them without a browser; each tab's components and handlers are in its own
``tab_*`` module, :mod:`rdexpert.app.ui` assembles them into the page, and
:mod:`rdexpert.app.server` builds and launches it.
"""

from rdexpert.extras import require_extra

require_extra("app")  # one line naming the extra, instead of gradio's (or, later, plotly's) bare ModuleNotFoundError

from rdexpert.app.server import build_app, main, parse_args  # noqa: E402

__all__ = ["build_app", "main", "parse_args"]
