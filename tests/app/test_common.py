"""What every tab shares (rdexpert.app.common): handlers bound for gradio, and unexpected errors as the app's
message.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry  # noqa: E402

from .support import GRADIO_WARNINGS  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_handlers_bound_for_gradio_keep_name_parameters_and_streaming(parts):
    import inspect as pyinspect

    import gradio as gr

    from rdexpert.app.common import bind
    from rdexpert.app.sessions import Sessions
    from rdexpert.app.tab_evaluate import evaluate_selected
    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.tab_inspect import inspect_example

    streaming = bind(finetune, object(), object())
    assert streaming.__name__ == "finetune" and pyinspect.isgeneratorfunction(streaming)
    assert list(pyinspect.signature(streaming).parameters)[0] == "normal"
    assert streaming.__annotations__["request"] == gr.Request | None
    plain = bind(inspect_example, parts.inspect.view, Sessions(Registry(), "unused"), ["a.png"])
    assert list(pyinspect.signature(plain).parameters) == ["key", "threshold", "evt", "request"]
    assert plain.__annotations__["evt"] is gr.SelectData and not pyinspect.isgeneratorfunction(plain)
    # Evaluate shows the network's tqdm bar in the page: gradio finds the gr.Progress default
    progress = pyinspect.signature(bind(evaluate_selected, parts.evaluate, None, {}, [])).parameters["progress"].default
    assert isinstance(progress, gr.Progress) and progress.track_tqdm


def test_unexpected_errors_become_the_apps_message_and_a_logged_traceback(caplog):
    """D6: an exception a handler did not expect reaches the page as the app's message, without server paths."""
    import gradio as gr

    from rdexpert.app.common import bind

    def broken(secret: Path, x):
        raise OSError(f"cannot open {secret}/weights.bin")

    def broken_stream(secret: Path, x):
        yield "first"
        raise zipfile.BadZipFile(f"{secret}/upload.zip")

    for handler in (bind(broken, Path("/srv/private")), bind(broken_stream, Path("/srv/private"))):
        with caplog.at_level("ERROR", logger="rdexpert.app"), pytest.raises(gr.Error) as raised:
            list(handler(1)) if handler.__name__ == "broken_stream" else handler(1)
        assert "went wrong" in raised.value.message and "/srv/private" not in raised.value.message
        assert "Traceback" in caplog.text or caplog.records[-1].exc_info
        caplog.clear()
