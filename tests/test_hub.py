"""Hub references resolved by huggingface_hub's real code against a cache laid out on disk; no network.

Publishing is tested up to the folder that would be uploaded and its model card;
the upload itself (HfApi.create_repo / upload_folder) needs the Hub and is not
exercised here.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
from conftest import CATEGORY, REPO, SHA, put_in_cache
from huggingface_hub import ModelCard

from rdexpert.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_checkpoint, record_metrics, update_config
from rdexpert.checkpoint_format import OOD_NAME
from rdexpert.cli import main
from rdexpert.hub import HubError, parse_reference, resolve_checkpoint
from rdexpert.hub.publish import push_to_hub, stage_checkpoint
from rdexpert.inference import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")


def test_references_are_parsed_strictly():
    assert parse_reference("acme/demo/metal_plate") == parse_reference("acme/demo/metal_plate@main")
    ref = parse_reference(f"acme/demo/metal_plate@{SHA}")
    assert (ref.repo_id, ref.category, ref.revision) == ("acme/demo", "metal_plate", SHA)
    assert parse_reference("acme/demo/screw@v1.0").revision == "v1.0"
    for local in ("./a/b/c", "/abs/a/b", "acme/demo", "a/b/c/d", "~/x/y/z", "acme/demo/cat@"):
        assert parse_reference(local) is None, local


def test_round_trip_train_save_cache_load_offline_gives_identical_maps(tiny_checkpoint, tiny_data, hub_cache, caplog):
    put_in_cache(hub_cache, tiny_checkpoint)
    image = sorted((tiny_data / CATEGORY / "test" / "defect").glob("*.png"))[0]
    local = Predictor.from_pretrained(tiny_checkpoint, device="cpu").predict(image)
    for revision in ("main", SHA):
        with caplog.at_level(logging.WARNING, logger="rdexpert.hub"):
            predictor = Predictor.from_pretrained(f"{REPO}/{CATEGORY}@{revision}", device="cpu")
        assert "HF_HUB_OFFLINE is set" in caplog.text and SHA in caplog.text
        source = predictor.config["source"]
        assert source["type"] == "hub" and source["commit"] == SHA and source["revision"] == revision
        remote = predictor.predict(image)
        assert np.array_equal(remote.anomaly_map, local.anomaly_map) and remote.score == local.score
        assert all(np.array_equal(a, b) for a, b in zip(remote.scale_maps, local.scale_maps))
        assert predictor.threshold == Predictor.from_pretrained(tiny_checkpoint, device="cpu").threshold
        caplog.clear()


def test_from_pretrained_takes_subfolder_and_revision_apart(tiny_checkpoint, hub_cache):
    put_in_cache(hub_cache, tiny_checkpoint)
    predictor = Predictor.from_pretrained(REPO, subfolder=CATEGORY, revision=SHA, device="cpu")
    source = predictor.config["source"]
    assert (source["repo_id"], source["category"], source["revision"], source["commit"]) == (REPO, CATEGORY, SHA, SHA)
    with pytest.raises(ValueError, match="subfolder="):
        Predictor.from_pretrained(REPO, revision=SHA, device="cpu")  # no category
    with pytest.raises(ValueError, match="one place"):
        Predictor.from_pretrained(f"{REPO}@main", subfolder=CATEGORY, revision=SHA, device="cpu")


def test_nothing_cached_says_what_to_do(hub_cache):
    with pytest.raises(HubError) as error:
        load_checkpoint(f"{REPO}/{CATEGORY}@main")
    message = str(error.value)
    assert "not in the local Hugging Face cache" in message and "HF_HUB_OFFLINE is set" in message
    assert f"hf download {REPO} --include '{CATEGORY}/*'" in message and "local checkpoint folder" in message


def test_missing_category_lists_the_cached_ones(tiny_checkpoint, hub_cache):
    put_in_cache(hub_cache, tiny_checkpoint)
    with pytest.raises(HubError, match=rf"no checkpoint in folder 'screw' .*\['{CATEGORY}'\]"):
        resolve_checkpoint(f"{REPO}/screw")


def test_unreachable_hub_falls_back_to_the_cache_and_says_so(tiny_checkpoint, hub_cache, monkeypatch, caplog):
    put_in_cache(hub_cache, tiny_checkpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with caplog.at_level(logging.WARNING, logger="rdexpert.hub"):
        folder, source = resolve_checkpoint(f"{REPO}/{CATEGORY}", endpoint="http://127.0.0.1:9")  # nothing listens
    assert "the Hub could not be reached" in caplog.text and "using the locally cached snapshot" in caplog.text
    assert source["commit"] == SHA and (folder / CONFIG_NAME).is_file()
    with pytest.raises(HubError, match="could not be reached"):
        resolve_checkpoint("acme/other/widget", endpoint="http://127.0.0.1:9")


def test_an_existing_local_folder_wins_over_a_hub_reference(tiny_checkpoint, tmp_path, monkeypatch, hub_cache):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_checkpoint, tmp_path / "acme" / "demo" / CATEGORY)
    folder, source = resolve_checkpoint(f"acme/demo/{CATEGORY}")
    assert source["type"] == "local" and folder == Path(f"acme/demo/{CATEGORY}")


# -- publishing -----------------------------------------------------------------------------------
@pytest.fixture
def publishable(tiny_checkpoint, tmp_path) -> Path:
    folder = tmp_path / "publish"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "resume").mkdir(exist_ok=True)
    (folder / "resume" / "state.json").write_text("{}")
    (folder / "NOTICE").write_text("Trained on synthetic textures.\n")
    update_config(folder, license={"id": "cc-by-nc-sa-4.0", "attribution": "Attribute the data set."})
    metrics = {"split": "test", "dataset": "data", "category": CATEGORY, "images": 4, "defective": 2,
               "image_auroc": 0.75, "pixel_auroc": 0.9, "aupro": 0.5, "image_ap": 0.8, "pixel_ap": 0.4, "f1_max": 0.8}
    record_metrics(folder, "teacher/gated", metrics, f1_threshold=1.5)
    return folder


def test_staging_holds_exactly_what_a_category_folder_needs(publishable, tmp_path):
    staging = stage_checkpoint(publishable, tmp_path / "staging", REPO)
    assert sorted(p.name for p in staging.iterdir()) == ["NOTICE", "README.md", CONFIG_NAME, WEIGHTS_NAME, OOD_NAME]
    assert (staging / WEIGHTS_NAME).read_bytes() == (publishable / WEIGHTS_NAME).read_bytes()
    card = ModelCard.load(staging / "README.md")  # huggingface_hub's own parser
    assert card.data.license == "cc-by-nc-sa-4.0" and "anomaly-detection" in card.data.tags
    text = card.text
    assert "| teacher/gated | 4 | 75.0 | 90.0 | 50.0 | 80.0 | 40.0 | 80.0 |" in text  # metrics table
    assert "| backbone | tf_efficientnet_lite0 (ImageNet-pretrained expert) |" in text  # training recipe
    assert "| iterations | 2 |" in text and "| seed | 111 |" in text
    assert f'Predictor.from_pretrained("{REPO}/{CATEGORY}")' in text  # usage
    assert "F1-optimal threshold on the labelled test split: 1.5000" in text and "Attribute the data set." in text


def test_card_without_metrics_and_license_rules(tiny_checkpoint, tmp_path):
    with pytest.raises(HubError, match="--license"):
        stage_checkpoint(tiny_checkpoint, tmp_path / "a", REPO)
    staging = stage_checkpoint(tiny_checkpoint, tmp_path / "b", REPO, license="apache-2.0")
    text = (staging / "README.md").read_text()
    assert "license: apache-2.0" in text and "No test metrics were stored" in text
    with pytest.raises(HubError, match="category folder name"):
        stage_checkpoint(tiny_checkpoint, tmp_path / "c", REPO, category="bad name", license="mit")


def test_push_refuses_offline_and_cli_dry_run_stages(publishable, hub_cache, tmp_path):
    with pytest.raises(HubError, match="publishing needs the network"):
        push_to_hub(publishable, REPO)
    assert main(["push", "--checkpoint", str(publishable), "--repo", REPO, "--dry-run", str(tmp_path / "dry")]) == 0
    assert (tmp_path / "dry" / "README.md").is_file() and not (tmp_path / "dry" / "resume").exists()
