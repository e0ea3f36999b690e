"""Hub addresses resolved by huggingface_hub's real code against a cache laid out on disk; no network.

Publishing is tested up to the folder that would be uploaded and its model card;
the upload itself (HfApi.create_repo / upload_folder) needs the Hub and is not
exercised here. The model zoo (a run folder of several categories, pushed as one
repo) uses the shipped float16 checkpoints under two category names.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
from helpers import CATEGORY, REPO, SHA, put_in_cache
from huggingface_hub import ModelCard, metadata_load

from rdexpert.app.registry import Registry
from rdexpert.checkpoint.folder import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    load_checkpoint,
    record_metrics,
    update_config,
)
from rdexpert.checkpoint.format import OOD_NAME
from rdexpert.cli import main
from rdexpert.hub import HubError, list_repo_categories, parse_hub_address, resolve_checkpoint
from rdexpert.hub.publish import push_to_hub, stage, stage_checkpoint
from rdexpert.inference.predictor import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")


def test_references_are_parsed_strictly():
    assert parse_hub_address("acme/demo/metal_plate") == parse_hub_address("acme/demo/metal_plate@main")
    ref = parse_hub_address(f"acme/demo/metal_plate@{SHA}")
    assert (ref.repo_id, ref.category, ref.revision) == ("acme/demo", "metal_plate", SHA)
    assert parse_hub_address("acme/demo/screw@v1.0").revision == "v1.0"
    for local in ("./a/b/c", "/abs/a/b", "acme/demo", "a/b/c/d", "~/x/y/z", "acme/demo/cat@"):
        assert parse_hub_address(local) is None, local


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


# -- a model zoo: one run folder OUT/<category>/, the whole repo in one commit -------------------------
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
ZOO = {"plate_rd": "metal_plate_rd_128px", "plate_gii": "metal_plate_rd_gii_128px"}  # category -> shipped checkpoint
CARD_FILES = ["NOTICE", "README.md", CONFIG_NAME, WEIGHTS_NAME, OOD_NAME]
REPORT_FILES = ["test/metrics.json", "test/metrics.md", "test/scores.csv"]  # the test report, without its pictures
# the stored test metrics (fractions in config.json / test/metrics.json), in percent to one decimal, by hand
EXPECTED = {("plate_rd", "image_auroc"): 99.4, ("plate_rd", "pixel_auroc"): 92.4, ("plate_rd", "aupro"): 77.5,
            ("plate_rd", "pixel_ap"): 80.9, ("plate_gii", "image_auroc"): 99.9, ("plate_gii", "pixel_auroc"): 92.4,
            ("plate_gii", "aupro"): 77.7, ("plate_gii", "image_ap"): 100.0}


@pytest.fixture
def zoo_run(tmp_path) -> Path:
    """Two real categories as training leaves them: ``plate_rd`` with its metrics in config.json,
    ``plate_gii`` with them only in the report ``test/metrics.json`` (plus loss curves, overlays: not published)."""
    run = tmp_path / "run"
    for category, name in ZOO.items():
        shutil.copytree(SHIPPED / name, run / category)
    update_config(run / "plate_gii", metrics={})
    return run


@pytest.fixture
def zoo_cache(zoo_run, hub_cache, tmp_path) -> Path:
    """The staged zoo, as a download of commit SHA (refs/main) would leave it in the Hub cache."""
    staged = tmp_path / "staged"
    assert stage(zoo_run, staged, REPO) is None
    for category in ZOO:
        put_in_cache(hub_cache, staged / category, category=category)
    return hub_cache


def test_zoo_dry_run_stages_the_whole_repo_with_one_card(zoo_run, tmp_path, capsys):
    out = tmp_path / "zoo_stage"
    assert main(["push", "--checkpoint", str(zoo_run), "--repo", "demo/rdexpert-zoo", "--dry-run", str(out)]) == 0
    assert "nothing was uploaded" in capsys.readouterr().out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted([".gitattributes", "README.md",
                            *(f"{c}/{name}" for c in ZOO for name in CARD_FILES + REPORT_FILES)])
    assert (out / "plate_rd" / WEIGHTS_NAME).read_bytes() == (zoo_run / "plate_rd" / WEIGHTS_NAME).read_bytes()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in (out / ".gitattributes").read_text()

    card = ModelCard.load(out / "README.md")  # huggingface_hub's own parser, model-index back to EvalResults
    data = card.data
    assert (data.license, data.library_name, data.pipeline_tag) == ("cc-by-nc-sa-4.0", "rdexpert", "image-segmentation")
    assert data.base_model == "timm/tf_efficientnet_lite0.in1k"
    assert data.datasets is None  # a local folder name ("mpdd") is not a Hub dataset id: only --dataset-id names one
    results = {(r.dataset_config, r.metric_type): r for r in data.eval_results}
    assert {category for category, _ in results} == set(ZOO) and len(results) == 12  # 6 metrics each
    assert {key: results[key].metric_value for key in EXPECTED} == EXPECTED
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in data.eval_results} == {
        ("anomaly-detection", "mpdd", "test")}
    assert metadata_load(out / "README.md")["model-index"][0]["name"] == "rdexpert-zoo"
    text = card.text
    assert "| `plate_rd` | rd | tf_efficientnet_lite0 | 128 | 107 | 99.4 | 92.4 | 77.5 | 99.8 | 80.9 | 98.8 |" in text
    assert "| `plate_gii` | rd_gii | tf_efficientnet_lite0 | 128 | ? | 99.9 | 92.4 | 77.7 | 100.0 | 83.5 | 99.4 |" in text
    assert 'Predictor.from_pretrained("demo/rdexpert-zoo", subfolder="plate_gii")' in text
    # each category keeps its own card; the report-only one shows its test/metrics.json numbers
    assert "| test/metrics.json | ? | 99.9 | 92.4 | 77.7 |" in (out / "plate_gii" / "README.md").read_text()


def test_zoo_category_without_metrics_is_listed_without_results(zoo_run, tmp_path):
    shutil.rmtree(zoo_run / "plate_gii" / "test")
    stage(zoo_run, tmp_path / "stage", REPO)
    card = ModelCard.load(tmp_path / "stage" / "README.md")
    assert {r.dataset_config for r in card.data.eval_results} == {"plate_rd"}
    assert "| `plate_gii` | rd_gii | tf_efficientnet_lite0 | 128 | – | – | – | – | – | – | – |" in card.text


def test_zoo_staging_refuses_what_it_cannot_publish(zoo_run, hub_cache, tmp_path):
    with pytest.raises(HubError, match="drop --category"):
        stage(zoo_run, tmp_path / "a", REPO, category="plate_rd")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("x")
    with pytest.raises(HubError, match="not empty"):
        stage(zoo_run, tmp_path / "b", REPO)
    update_config(zoo_run / "plate_rd", license={"id": "mit"})
    with pytest.raises(HubError, match="different licenses"):
        stage(zoo_run, tmp_path / "c", REPO)
    stage(zoo_run, tmp_path / "d", REPO, license="cc-by-nc-sa-4.0")  # one license for all: fine
    with pytest.raises(HubError, match="publishing needs the network"):
        push_to_hub(zoo_run, REPO)


def test_each_zoo_category_loads_from_the_cache_like_its_local_folder(zoo_cache, mpdd_root):
    image = sorted((mpdd_root / "metal_plate" / "test" / "defect").glob("*.png"))[0]
    assert list_repo_categories(REPO)[1] == sorted(ZOO)
    for category, name in ZOO.items():
        predictor = Predictor.from_pretrained(REPO, subfolder=category, device="cpu")
        assert (predictor.config["source"]["commit"], predictor.config["source"]["category"]) == (SHA, category)
        remote, local = predictor.predict(image), Predictor.from_pretrained(SHIPPED / name, device="cpu").predict(image)
        assert np.array_equal(remote.anomaly_map, local.anomaly_map) and remote.score == local.score


def test_app_lists_every_zoo_category_and_loads_one_only_when_chosen(zoo_cache, caplog):
    # plate_gii's weights are not downloaded yet: listing needs only the config.json files
    (zoo_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / SHA / "plate_gii" / WEIGHTS_NAME).unlink()
    registry = Registry(device="cpu")
    with caplog.at_level(logging.WARNING, logger="rdexpert.hub"):
        entries = registry.add_hub(f"{REPO}@main")
    assert "HF_HUB_OFFLINE is set" in caplog.text
    keys = [f"plate_gii · rd_gii · hub: {REPO}", f"plate_rd · rd · hub: {REPO}"]
    assert [e.key for e in entries] == keys and registry.messages == []
    assert registry.choices() == keys[::-1]  # the picker: one product, its variants in the paper's order (rd first)
    assert [e.ref for e in entries] == [f"{REPO}/plate_gii@{SHA}", f"{REPO}/plate_rd@{SHA}"]  # the listed commit
    assert not any(registry.is_loaded(k) for k in keys)
    predictor = registry.predictor(keys[1])
    assert registry.is_loaded(keys[1]) and not registry.is_loaded(keys[0])
    assert predictor.config["source"]["category"] == "plate_rd"
    with pytest.raises(CheckpointError, match=f"could not load `{REPO}/plate_gii@{SHA}`"):
        registry.predictor(keys[0])


def test_app_hub_listing_errors_are_messages(zoo_cache, monkeypatch):
    registry = Registry()
    assert registry.add_hub("acme/absent") == [] and registry.add_hub("not-a-repo") == []
    assert "not in the local Hugging Face cache" in registry.messages[0]
    assert "hf download acme/absent --include '*/config.json'" in registry.messages[0]
    assert "not a Hub model repository" in registry.messages[1]
    # online but the Hub out of reach: the cached listing, else a clear message
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    assert [e.ref for e in registry.add_hub(REPO)] == [f"{REPO}/plate_gii@{SHA}", f"{REPO}/plate_rd@{SHA}"]
    assert registry.add_hub("acme/absent") == [] and "could not be reached" in registry.messages[-1]


def test_card_says_in_plain_words_when_the_calibration_expects_most_defects_missed(tiny_checkpoint, tmp_path):
    """Where the calibration's own estimate says most defects pass the threshold, the card says so."""
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    config = update_config(folder)
    calibration = {**config["calibration"], "faint_scores": [config["calibration"]["threshold"] - 1e-3] * 40}
    update_config(folder, calibration=calibration)
    text = (stage_checkpoint(folder, tmp_path / "card", REPO, license="mit") / "README.md").read_text()
    assert "40 of 40 faint ones" in text and "expect this model to miss many real defects" in text


def test_the_card_names_the_dataset_the_user_gives(zoo_run, tmp_path):
    out = tmp_path / "with_id"
    assert main(["push", "--checkpoint", str(zoo_run), "--repo", "demo/rdexpert-zoo", "--dataset-id",
                 "acme/mpdd-plates", "--dry-run", str(out)]) == 0
    data = ModelCard.load(out / "README.md").data
    assert data.datasets == ["acme/mpdd-plates"]
    assert {r.dataset_type for r in data.eval_results} == {"acme/mpdd-plates"}
    assert ModelCard.load(out / "plate_rd" / "README.md").data.datasets == ["acme/mpdd-plates"]
