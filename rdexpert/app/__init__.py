"""The Gradio app of rdexpert (``python app.py``): inspect images, walk through ablations, fine-tune, evaluate.

The pieces that are plain Python (upload validation, fine-tune jobs, the
checkpoint registry, pictures and plots) live in their own modules so tests can
call them without a browser; :mod:`rdexpert.app.ui` wires them to Gradio and
:mod:`rdexpert.app.server` builds and launches the page.
"""

from .server import build_app, main, parse_args

__all__ = ["build_app", "main", "parse_args"]
