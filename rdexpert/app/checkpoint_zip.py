"""A checkpoint zip (a fine-tune downloaded earlier) loaded back into the page: checked, then only its JSON and
safetensors files extracted, with size limits.

Why apart from the image uploads: a checkpoint decides what gets built, so nothing in the zip but the files the
loader reads (rdexpert.checkpoint.folder) is ever extracted; the entry-name checks are shared with the uploads.
"""

from __future__ import annotations

import json
import shutil
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from rdexpert.app.uploads import UploadError, check_zip_entry_name, open_zip, zip_read


@dataclass(frozen=True)
class CheckpointZipLimits:
    """Hard limits on a checkpoint zip loaded back into the page (a fine-tune downloaded earlier)."""

    max_archive_mb: float = 300.0
    max_entries: int = 200
    max_weights_mb: float = 300.0  # each .safetensors file
    max_json_mb: float = 5.0  # each .json file
    max_header_mb: float = 16.0  # a safetensors file's JSON header

    def describe(self) -> str:
        return (f"a zip of at most {self.max_archive_mb:g} MB holding one checkpoint folder (config.json and "
                f"model.safetensors, each weights file at most {self.max_weights_mb:g} MB)")


# the only files read from a checkpoint zip (rdexpert.checkpoint.folder: only JSON and safetensors are read);
# anything else in it (the loss picture, a test report, a resume state) is never extracted
CHECKPOINT_FILES = {"config.json": "json", "model.safetensors": "safetensors", "ood.safetensors": "safetensors",
                    "loss_history.json": "json"}
REQUIRED_CHECKPOINT_FILES = ("config.json", "model.safetensors")


@dataclass
class UnpackedCheckpoint:
    folder: Path  # where the checkpoint's files were written
    name: str  # the checkpoint folder's name inside the zip ("" at the top level)
    ignored: int  # entries that were not read (not one of CHECKPOINT_FILES)


def check_safetensors(path: Path, shown: str, max_header_bytes: int) -> None:
    """A safetensors file's header read as JSON and checked against the file's size, without loading a tensor:
    UploadError when it is not one (a pickle renamed .safetensors, a truncated download)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UploadError(f"'{shown}' is not a safetensors file (too short).")
        length = struct.unpack("<Q", head)[0]
        if length > max_header_bytes or 8 + length > size:
            raise UploadError(f"'{shown}' is not a safetensors file (its header size does not fit the file).")
        try:
            header = json.loads(f.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise UploadError(f"'{shown}' is not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise UploadError(f"'{shown}' is not a safetensors file (its header is not a table of tensors).")
    data = size - 8 - length
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data):
            raise UploadError(f"'{shown}' is damaged: tensor '{str(name)[:60]}' lies outside the file.")


def unpack_checkpoint_zip(archive: str | Path, dest: str | Path,
                          limits: CheckpointZipLimits = CheckpointZipLimits()) -> UnpackedCheckpoint:
    """Validate a checkpoint zip (as the Fine-tune tab offers it for download) and write its checkpoint files
    under ``dest``; UploadError, with a message for the page, when it is refused.

    Refused before a byte is extracted: a zip too large or with too many entries, an entry name that is
    absolute, holds ``..`` or is a link, no or several ``config.json``, no ``model.safetensors`` beside it, a
    file claiming more than its limit. Only :data:`CHECKPOINT_FILES` are extracted (streamed, each to a name
    chosen here, never the name in the zip, and stopped at its size limit whatever the zip claims); then the
    JSON files are parsed and the safetensors headers checked. Nothing else is read, so nothing in the zip can
    run code. ``dest`` is removed again when the zip is refused.
    """
    archive, dest = Path(archive), Path(dest)
    if archive.suffix.lower() != ".zip":
        raise UploadError(f"'{archive.name}' is not a .zip; load the zip the Fine-tune tab offered for download.")
    zf, infos = open_zip(archive, limits.max_archive_mb, limits.max_entries)
    with zf:
        files = {}
        for info in infos:
            path = check_zip_entry_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UploadError(f"The zip entry '{info.filename}' is a symbolic link; the archive was refused.")
            if not info.is_dir():
                files[path] = info
        configs = [p for p in files if p.name == "config.json" and len(p.parts) <= 2]
        if not configs:
            raise UploadError("The zip holds no checkpoint: no config.json at its top or in one folder. Load the "
                              "zip the Fine-tune tab offered for download.")
        if len(configs) > 1:
            raise UploadError(f"The zip holds {len(configs)} checkpoints (config.json files); load one at a time.")
        root = configs[0].parent
        chosen = {name: files.get(root / name) for name in CHECKPOINT_FILES}
        missing = [name for name in REQUIRED_CHECKPOINT_FILES if chosen[name] is None]
        if missing:
            raise UploadError(f"The checkpoint in the zip has no {', '.join(missing)}; it cannot be loaded.")
        chosen = {name: info for name, info in chosen.items() if info is not None}
        for name, info in chosen.items():
            limit = (limits.max_json_mb if CHECKPOINT_FILES[name] == "json" else limits.max_weights_mb) * 2**20
            if info.file_size > limit:
                raise UploadError(f"'{name}' in the zip is {info.file_size / 2**20:.0f} MB; the limit is "
                                  f"{limit / 2**20:g} MB.")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        try:
            for name, info in chosen.items():
                limit = (limits.max_json_mb if CHECKPOINT_FILES[name] == "json" else limits.max_weights_mb) * 2**20
                source = zip_read(lambda: zf.open(info), info.filename)  # noqa: B023 (called at once)
                with source, open(dest / name, "wb") as target:
                    copied = 0
                    while chunk := zip_read(lambda: source.read(1 << 20), info.filename):  # noqa: B023
                        copied += len(chunk)
                        if copied > limit:
                            raise UploadError(f"'{name}' in the zip is larger than it claims; refused.")
                        target.write(chunk)
            for name, kind in CHECKPOINT_FILES.items():
                if not (dest / name).is_file():
                    continue
                if kind == "json":
                    try:
                        json.loads((dest / name).read_text(encoding="utf-8"))
                    except (UnicodeDecodeError, ValueError):
                        raise UploadError(f"'{name}' in the zip is not valid JSON.") from None
                else:
                    check_safetensors(dest / name, name, int(limits.max_header_mb * 2**20))
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return UnpackedCheckpoint(dest, root.name, len(files) - len(chosen))
