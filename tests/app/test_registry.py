"""The checkpoint registry (rdexpert.app.registry): broken and missing checkpoints are messages; metrics are read.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry, flatten_metrics  # noqa: E402

from .support import GRADIO_WARNINGS  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_broken_and_missing_checkpoints_become_messages(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{ not json")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps({"model": {"variant": "full"}}))
    registry = Registry()
    registry.scan(tmp_path)
    registry.scan(tmp_path / "absent")
    assert registry.choices() == []
    text = "\n".join(registry.messages)
    assert "broken" in text and "model.safetensors" in text and "absent" in text


def test_metrics_keyed_by_setting_are_read():
    assert flatten_metrics({"image_auroc": 0.9}) == {"image_auroc": 0.9}
    nested = {"expert/gated": {"image_auroc": 0.7}, "teacher/gated": {"image_auroc": 0.95, "aupro": 0.8}}
    assert flatten_metrics(nested) == {"image_auroc": 0.95, "aupro": 0.8}


def test_messages_hide_server_paths_but_keep_hub_addresses():
    from rdexpert.app.registry import public_text

    assert public_text("org/name/metal_plate@abc is not cached") == "org/name/metal_plate@abc is not cached"
    assert public_text("file /srv/data/uploads/a.png is broken") == "file a.png is broken"
    assert public_text("'/srv/my uploads/a b.png' is broken") == "'a b.png' is broken"
    assert public_text("(see /tmp/run/x/log.txt)") == "(see log.txt)"
