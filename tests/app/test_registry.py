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
    "metal_plate · full · shipped" and "... shipped (2)"; product, variant, image size and budget tell them apart,
    and a name that is still taken gets the folder's name, not a number."""
    from .support import ROOT

    registry = Registry()
    registry.scan(ROOT / "checkpoints", source="shipped")
    names = registry.choices()
    if len(names) < 2:
        pytest.skip("the shipped checkpoints are not here")
    assert not any("(2)" in name for name in names) and len(set(names)) == len(names)
    for name in names:
        entry = registry.get(name)
        assert name.startswith(f"{entry.category} · {entry.variant} · {entry.image_size} px · ")
    demo = registry.get(names[0])
    again = registry.add_local(demo.folder, source="shipped")
    assert again.key == f"{names[0]} ({demo.folder.name})"


def _checkpoint(folder, category, variant, size, iterations, preset="quick"):
    folder.mkdir(parents=True)
    config = {"model": {"variant": variant, "image_size": size}, "dataset": {"category": category},
              "training": {"preset": preset, "iterations": iterations, "image_size": size}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_the_picker_groups_by_product_with_the_default_model_first(tmp_path):
    """Issue 23: products alphabetically, within each the default (largest) model first, then the variants in
    ablation-ladder order; labels say product · variant · size · budget (a preset's name only when the run used
    its budget)."""
    for category in ("tire", "bottle"):
        for variant in ("full_plain", "rd_gii", "rd", "full"):
            _checkpoint(tmp_path / f"{category}_{variant}_128px", category, variant, 128, 200)
        _checkpoint(tmp_path / category, category, "full", 256, 800, preset="cpu")
    _checkpoint(tmp_path / "short", "bottle", "rd", 128, 50)  # the quick preset's size, not its 200 iterations
    registry = Registry()
    registry.scan(tmp_path)
    names = [name.partition(" · local")[0] for name in registry.choices()]
    ladder = ["rd · 128 px · quick preset", "rd_gii · 128 px · quick preset", "full · 128 px · quick preset",
              "full_plain · 128 px · quick preset"]
    assert names[:6] == ["bottle · full · 256 px · cpu preset"] + [f"bottle · {v}" for v in ladder[:1]] + [
        "bottle · rd · 128 px · 50 iterations"] + [f"bottle · {v}" for v in ladder[1:]]
    assert names[6:] == ["tire · full · 256 px · cpu preset"] + [f"tire · {v}" for v in ladder]
    # a session's own checkpoints (fine-tunes, loaded zips) follow the shared ones, in the order they were made
    session = Registry(parent=registry)
    session.add_local(_checkpoint(tmp_path / "mine", "aaa", "rd", 64, 3), source="fine-tuned", name="mine")
    assert session.choices()[-1].startswith("mine: aaa · rd · 64 px · 3 iterations · fine-tuned")


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
