"""Upload validation (rdexpert.app.uploads): zips, non-images and limits are refused with a message, before
anything is written; a good upload is sorted into normal, defective and masks.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from rdexpert.app.registry import Registry  # noqa: E402
from rdexpert.app.uploads import (  # noqa: E402
    UploadError,
    UploadLimits,
    check_zip_entry_name,
    prepare_dataset,
)

from .support import GRADIO_WARNINGS, png_bytes, zip_files  # noqa: E402

pytestmark = GRADIO_WARNINGS


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/evil.png", "..\\evil.png"])
def test_zip_entry_names_outside_the_archive_are_refused(name):
    with pytest.raises(UploadError):
        check_zip_entry_name(name)


def test_traversal_zip_is_refused_before_anything_is_written(tmp_path):
    archive = zip_files(
        tmp_path / "evil.zip",
        {"good/a.png": png_bytes(0), "good/b.png": png_bytes(1), "../../escaped.png": png_bytes(2)},
    )
    with pytest.raises(UploadError, match=r"outside the archive"):
        prepare_dataset(tmp_path / "dest", [archive])
    assert not (tmp_path / "dest").exists() and not (tmp_path.parent / "escaped.png").exists()


def test_non_images_and_fake_images_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, p in enumerate(good):
        p.write_bytes(png_bytes(i))
    with pytest.raises(UploadError, match="not an image file"):
        prepare_dataset(tmp_path / "d1", [*good, text])
    with pytest.raises(UploadError, match="could not be read as an image"):
        prepare_dataset(tmp_path / "d2", [*good, fake])
    archive = zip_files(tmp_path / "mixed.zip", {"a.png": png_bytes(0), "b.png": png_bytes(1), "run.sh": b"rm -rf /"})
    with pytest.raises(UploadError, match="not an image"):
        prepare_dataset(tmp_path / "d3", [archive])


def test_archive_limits(tmp_path):
    many = zip_files(tmp_path / "many.zip", {f"{i}.png": png_bytes(i, 8) for i in range(12)})
    with pytest.raises(UploadError, match="entries"):
        prepare_dataset(tmp_path / "d1", [many], limits=UploadLimits(max_archive_entries=10))
    with pytest.raises(UploadError, match="MB"):
        prepare_dataset(tmp_path / "d2", [many], limits=UploadLimits(max_archive_mb=1e-4))
    with pytest.raises(UploadError, match="unpack"):
        prepare_dataset(tmp_path / "d3", [many], limits=UploadLimits(max_unpacked_mb=1e-4))
    with pytest.raises(UploadError, match="pixels"):
        prepare_dataset(tmp_path / "d4", [many], limits=UploadLimits(max_image_pixels=10))
    with pytest.raises(UploadError, match="limit is 5"):
        prepare_dataset(tmp_path / "d5", [many], limits=UploadLimits(max_normal_images=5))
    one = zip_files(tmp_path / "one.zip", {"a.png": png_bytes(0)})
    with pytest.raises(UploadError, match="at least 2"):
        prepare_dataset(tmp_path / "d6", [one])


def test_zip_layout_is_sorted_into_normal_defect_and_mask(tmp_path):
    archive = zip_files(
        tmp_path / "parts.zip",
        {
            "parts/a.png": png_bytes(0),
            "parts/good/b.png": png_bytes(1),
            "parts/good/b (copy).png": png_bytes(2),
            "parts/defect/x.png": png_bytes(3),
            "parts/mask/x_mask.png": png_bytes(4),
            "__MACOSX/parts/._a.png": b"junk",
            "parts/.DS_Store": b"junk",
        },
    )
    data = prepare_dataset(tmp_path / "dest", [archive])
    assert sorted(p.name for p in data.normal) == ["a.png", "b.png", "b_copy.png"]
    assert [p.name for p in data.defect] == ["x.png"] and data.matched_masks() == 1
    assert len(data.skipped) == 2
    assert all(
        p.resolve().is_relative_to((tmp_path / "dest").resolve()) for p in data.normal + data.defect + data.masks
    )


def _corrupt(archive: Path, offset_of, patch: bytes) -> Path:
    data = bytearray(archive.read_bytes())
    at = offset_of(bytes(data))
    data[at : at + len(patch)] = patch
    archive.write_bytes(bytes(data))
    return archive


def test_a_zip_with_a_corrupt_or_lying_header_is_refused_with_a_message(tmp_path, parts):
    """D6: a broken zip is an upload message (BadZipFile and the like never reach the visitor)."""
    import struct

    from rdexpert.app.tab_finetune import finetune
    from rdexpert.app.ui import AppConfig

    entries = {"good/a.png": png_bytes(0), "good/b.png": png_bytes(1), "good/c.png": png_bytes(2)}
    # the local header of the second entry is overwritten
    bad_magic = _corrupt(zip_files(tmp_path / "magic.zip", entries), lambda d: d.index(b"PK\x03\x04", 4), b"XX\x00\x00")
    # the central directory says the first entry is 10 bytes (it is not): the CRC check fails on reading
    lying = _corrupt(
        zip_files(tmp_path / "lying.zip", entries),
        lambda d: d.index(b"PK\x01\x02") + 24,  # uncompressed size of the first central directory record
        struct.pack("<I", 10),
    )
    for archive in (bad_magic, lying):
        with pytest.raises(UploadError, match="damaged|not a valid zip"):
            prepare_dataset(tmp_path / archive.stem, [archive])
        assert not (tmp_path / archive.stem).exists()
        cfg = AppConfig(registry=Registry(), workdir=tmp_path / "work")
        ft = parts.finetune
        status = next(finetune(ft, cfg, [str(archive)], None, None, None, "rd", 64, 2, "t", False, None))[ft.status]
        assert "Upload refused" in status and str(tmp_path) not in status, status


# -- a downloaded checkpoint zip, loaded back (item 10) ------------------------------------------
def _checkpoint_zip(path, folder, extra: dict | None = None, prefix: str = "my-parts/"):
    """A zip as the Fine-tune tab offers it: ``prefix`` + every file of the checkpoint ``folder``, plus ``extra``."""
    entries = {prefix + p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return zip_files(path, {**entries, **(extra or {})})


def test_a_checkpoint_zip_yields_only_its_json_and_safetensors(tmp_path, app_checkpoints):
    import json

    from rdexpert.app.checkpoint_zip import unpack_checkpoint_zip

    folder = app_checkpoints["folder"] / "tiny_rd"
    archive = _checkpoint_zip(tmp_path / "m.zip", folder, {"my-parts/notes.pkl": b"\x80\x04cos\nsystem\n",
                                                           "my-parts/test/metrics.json": b"{}"})
    unpacked = unpack_checkpoint_zip(archive, tmp_path / "out")
    written = sorted(p.name for p in unpacked.folder.iterdir())
    assert written == sorted(n for n in ("config.json", "model.safetensors", "ood.safetensors", "loss_history.json")
                             if (folder / n).is_file())
    assert unpacked.name == "my-parts" and unpacked.ignored >= 2  # the pickle and the report were never extracted
    assert json.loads((unpacked.folder / "config.json").read_text())["model"]["variant"] == "rd"
    flat = _checkpoint_zip(tmp_path / "flat.zip", folder, prefix="")  # files at the top level load too
    assert unpack_checkpoint_zip(flat, tmp_path / "flat").name == ""


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"../evil/config.json": b"{}"}, "outside the archive"),
        ({"/etc/config.json": b"{}"}, "absolute path"),
        ({"other/config.json": b"{}"}, "2 checkpoints"),
    ],
)
def test_a_checkpoint_zip_with_paths_outside_or_two_checkpoints_is_refused(tmp_path, app_checkpoints, extra, words):
    from rdexpert.app.checkpoint_zip import unpack_checkpoint_zip

    archive = _checkpoint_zip(tmp_path / "m.zip", app_checkpoints["folder"] / "tiny_rd", extra)
    with pytest.raises(UploadError, match=words):
        unpack_checkpoint_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil").exists()


def test_a_checkpoint_zip_that_lies_or_is_too_big_is_refused(tmp_path, app_checkpoints):
    import struct

    from rdexpert.app.checkpoint_zip import CheckpointZipLimits, unpack_checkpoint_zip

    folder = app_checkpoints["folder"] / "tiny_rd"
    config = (folder / "config.json").read_bytes()
    cases = [
        ({"m/config.json": config}, "no model.safetensors"),
        ({"m/config.json": config, "m/model.safetensors": b"\x80\x04pickle"}, "not a safetensors file"),
        ({"m/config.json": config, "m/model.safetensors": struct.pack("<Q", 10**9) + b"{}"}, "header size"),
        ({"m/config.json": b"{ not json", "m/model.safetensors": (folder / "model.safetensors").read_bytes()},
         "not valid JSON"),
        ({"m/notes.txt": b"hello"}, "no config.json"),
    ]
    for k, (entries, words) in enumerate(cases):
        with pytest.raises(UploadError, match=words):
            unpack_checkpoint_zip(zip_files(tmp_path / f"{k}.zip", entries), tmp_path / f"out{k}")
        assert not (tmp_path / f"out{k}").exists()
    small = CheckpointZipLimits(max_weights_mb=0.001)
    with pytest.raises(UploadError, match="limit"):
        unpack_checkpoint_zip(_checkpoint_zip(tmp_path / "big.zip", folder), tmp_path / "big", small)
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("m/config.json")
        info.external_attr = (0o120777 << 16)  # a symbolic link
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UploadError, match="symbolic link"):
        unpack_checkpoint_zip(link, tmp_path / "link")
    (tmp_path / "x.pt").write_bytes(b"x")
    with pytest.raises(UploadError, match="not a .zip"):
        unpack_checkpoint_zip(tmp_path / "x.pt", tmp_path / "pt")
