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


def test_checkpoint_names_say_what_differs():
    """Item 9: the 256-px demo and the 128-px ablation variant of the same category and variant were
    "metal_plate · full · shipped" and "... shipped (2)"; the image size tells them apart, and a name that is
    still taken gets the folder's name, not a number."""
    from .support import ROOT

    registry = Registry()
    registry.scan(ROOT / "checkpoints", source="shipped")
    names = registry.choices()
    if len(names) < 2:
        pytest.skip("the shipped checkpoints are not here")
    assert "metal_plate · full · 256 px · shipped" in names and "metal_plate · full · 128 px · shipped" in names
    assert not any("(2)" in name for name in names) and len(set(names)) == len(names)
    again = registry.add_local(ROOT / "checkpoints" / "metal_plate", source="shipped")
    assert again.key == "metal_plate · full · 256 px · shipped (metal_plate)"


def test_a_visitor_reads_what_is_unavailable_the_operator_reads_why(monkeypatch, caplog, tmp_path):
    """Item 7: an unreachable Hub repository: the page says the models are not available right now and that the
    rest works, without flags, commands or exception names; the details go to the log (and registry.messages)."""
    import rdexpert.app.registry as registry_module
    from rdexpert.app.header import NO_MODEL, banner
    from rdexpert.checkpoint.format import CheckpointError

    def unreachable(repo):
        raise CheckpointError("acme/parts is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: run "
                              "`hf download acme/parts --include '*/config.json'` (LocalEntryNotFoundError)")

    monkeypatch.setattr(registry_module, "list_repo_categories", unreachable)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{ not json")
    registry = Registry()
    registry.scan(tmp_path)
    with caplog.at_level("WARNING"):
        assert registry.add_hub("acme/parts@main") == []
    page = banner(registry)
    assert "acme/parts" in page and "not available right now" in page and NO_MODEL in page
    assert "broken" in page and "not available" in page and "server&#x27;s log" in page
    for detail in ("HF_HUB_OFFLINE", "hf download", "LocalEntryNotFoundError", "JSON", "@main"):
        assert detail not in page, detail
    assert any("HF_HUB_OFFLINE" in m for m in registry.messages)  # the operator's details
    assert "HF_HUB_OFFLINE" in caplog.text and "broken" in caplog.text
