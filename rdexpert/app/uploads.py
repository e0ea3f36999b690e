"""Validate user uploads for fine-tuning: image files and zip archives, with hard limits.

Everything a user sends is checked before it touches the training code:

* only image files (by extension *and* by decoding them completely, as training
  will: a truncated JPEG is refused here, with its name, not at training start)
  are accepted;
* zip archives are refused when an entry name is absolute, contains ``..``, is a
  symlink, or when the archive is too large, holds too many entries or would
  unpack to too many bytes (zip bombs);
* images larger than :attr:`UploadLimits.max_image_pixels` are refused, from
  their header, before any pixel is decoded;
* a zip whose entries cannot be read back (a corrupt header, sizes or checksums
  that lie) is refused with a message, never with a bare exception.

Accepted files are copied (never extracted in place) under a fresh folder with
sanitised names, split into ``normal/``, ``defect/`` and ``mask/``.

A checkpoint zip (a fine-tune downloaded earlier, loaded back) goes through the
same entry checks in ``rdexpert.app.checkpoint_zip``.
"""

from __future__ import annotations

import re
import shutil
import stat
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from rdexpert.data import IMAGE_EXTENSIONS, ImageLoadError, load_image, load_mask

# Folder names inside a zip that say what an image is (compared case-insensitively).
NORMAL_DIRS = ("good", "normal", "ok", "train")
DEFECT_DIRS = ("defect", "defects", "defective", "anomaly", "anomalous", "bad", "ko")
MASK_DIRS = ("mask", "masks", "ground_truth", "gt")
# Files that archivers add on their own; skipped silently.
JUNK_NAMES = (".ds_store", "thumbs.db", "desktop.ini")
JUNK_DIRS = ("__macosx",)


class UploadError(ValueError):
    """An upload was refused; the message says why, in words for the page."""


# what a broken zip raises while it is read (bad magic, CRC or size, unknown compression, encryption, bad offsets)
ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)


def image_size(path: str | Path, shown: str, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` from the file's header (no pixel decoded); UploadError when too large or not an image."""
    try:
        with warnings.catch_warnings():  # a big image is refused below, by its size: no warning needed
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise UploadError(
            f"'{shown}' has far too many pixels; the limit is {max_pixels:,} pixels "
            f"(e.g. {int(max_pixels**0.5)}x{int(max_pixels**0.5)})."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError(f"'{shown}' could not be read as an image (not an image file, or a broken one).") from None
    if width * height > max_pixels:
        raise UploadError(
            f"'{shown}' is {width}x{height} pixels; the limit is {max_pixels:,} pixels "
            f"(e.g. {int(max_pixels**0.5)}x{int(max_pixels**0.5)}). Downscale it and upload it again."
        )
    return width, height


@dataclass(frozen=True)
class UploadLimits:
    """Hard limits on what the fine-tune tab accepts (stated in the page)."""

    max_archive_mb: float = 200.0
    max_archive_entries: int = 2000
    max_unpacked_mb: float = 500.0
    max_normal_images: int = 500
    max_defect_images: int = 200
    max_image_pixels: int = 4096 * 4096
    min_normal_images: int = 2
    max_file_mb: float = 50.0

    def describe(self) -> str:
        return (
            f"at least {self.min_normal_images} and at most {self.max_normal_images} normal images; "
            f"at most {self.max_defect_images} defective images (and as many masks); "
            f"each image at most {int(self.max_image_pixels**0.5)}x{int(self.max_image_pixels**0.5)} pixels "
            f"and {self.max_file_mb:g} MB; a zip at most {self.max_archive_mb:g} MB, "
            f"{self.max_archive_entries} entries and {self.max_unpacked_mb:g} MB unpacked"
        )


@dataclass
class UploadedDataset:
    """Where the accepted images were copied, and what was skipped."""

    root: Path
    normal: list[Path] = field(default_factory=list)
    defect: list[Path] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def normal_dir(self) -> Path:
        return self.root / "normal"

    @property
    def defect_dir(self) -> Path | None:
        return self.root / "defect" if self.defect else None

    @property
    def mask_dir(self) -> Path | None:
        return self.root / "mask" if self.masks else None

    def summary(self) -> str:
        matched = self.matched_masks()
        text = f"{len(self.normal)} normal image(s)"
        if self.defect:
            text += f", {len(self.defect)} defective image(s) ({matched} with a mask)"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} system file(s)"
        return text

    def matched_masks(self) -> int:
        stems = {p.stem for p in self.masks} | {p.stem[: -len("_mask")] for p in self.masks if p.stem.endswith("_mask")}
        return sum(p.stem in stems for p in self.defect)


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "image"
    return stem[:80]


def _check_image_file(path: Path, shown: str, limits: UploadLimits, kind: str = "normal") -> None:
    """Check one image file: name, file size, pixel count (from the header), then a complete decode.

    The decode is the one training does (:func:`rdexpert.data.load_image`, or
    ``load_mask`` for masks), so a file accepted here is one training can read.
    """
    if not _is_image_name(shown):
        raise UploadError(
            f"'{shown}' is not an image file (accepted: {', '.join(IMAGE_EXTENSIONS)}, or one .zip archive)."
        )
    size_mb = path.stat().st_size / 2**20
    if size_mb > limits.max_file_mb:
        raise UploadError(f"'{shown}' is {size_mb:.0f} MB; the limit per image is {limits.max_file_mb:g} MB.")
    image_size(path, shown, limits.max_image_pixels)
    try:
        if kind == "mask":
            load_mask(path)
        else:
            load_image(path, max_pixels=None)
    except (ImageLoadError, OSError, ValueError, SyntaxError, MemoryError) as error:
        reason = "truncated or corrupt" if "truncat" in str(error).lower() else "it could not be decoded"
        raise UploadError(f"'{shown}' could not be read as an image ({reason}); re-export it or leave it out.") from None


class _Writer:
    """Copies accepted files under root/{normal,defect,mask} with unique, sanitised names."""

    def __init__(self, root: Path, limits: UploadLimits):
        self.dataset = UploadedDataset(root=root)
        self.limits = limits
        self.used: dict[str, set[str]] = {"normal": set(), "defect": set(), "mask": set()}

    def add(self, kind: str, source: Path, shown: str) -> None:
        _check_image_file(source, shown, self.limits, kind)
        stem = _safe_stem(shown)
        candidate, counter = stem, 1
        while candidate.lower() in self.used[kind]:
            counter += 1
            candidate = f"{stem}_{counter}"
        self.used[kind].add(candidate.lower())
        target = self.dataset.root / kind / f"{candidate}{Path(shown).suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        getattr(self.dataset, {"normal": "normal", "defect": "defect", "mask": "masks"}[kind]).append(target)

    def finish(self) -> UploadedDataset:
        d, lim = self.dataset, self.limits
        if len(d.normal) < lim.min_normal_images:
            raise UploadError(
                f"Found {len(d.normal)} normal image(s); fine-tuning needs at least {lim.min_normal_images} "
                "(one is held out to calibrate the threshold). Put normal images at the top of the zip or in a "
                "'good/' or 'normal/' folder."
            )
        if len(d.normal) > lim.max_normal_images:
            raise UploadError(f"{len(d.normal)} normal images; the limit is {lim.max_normal_images}.")
        if len(d.defect) > lim.max_defect_images:
            raise UploadError(f"{len(d.defect)} defective images; the limit is {lim.max_defect_images}.")
        if len(d.masks) > lim.max_defect_images:
            raise UploadError(f"{len(d.masks)} masks; the limit is {lim.max_defect_images}.")
        if d.masks and not d.defect:
            raise UploadError("Masks were given without defective images; masks belong to defective images.")
        return d


def _kind_of(parts: tuple[str, ...]) -> str:
    """normal / defect / mask from the folders of a zip entry (the innermost telling folder wins)."""
    for part in reversed(parts[:-1]):
        low = part.lower()
        if low in MASK_DIRS:
            return "mask"
        if low in DEFECT_DIRS:
            return "defect"
        if low in NORMAL_DIRS:
            return "normal"
    # MVTec-style archives: test/<defect type>/... holds defective images
    if any(part.lower() == "test" for part in parts[:-1]):
        return "defect"
    return "normal"


def check_zip_entry_name(name: str) -> PurePosixPath:
    """Refuse absolute paths, drive letters, backslash tricks and '..' components; return the clean path."""
    if not name or "\x00" in name:
        raise UploadError("The zip has an entry with an empty or invalid name; it was refused.")
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise UploadError(f"The zip entry '{name}' has an absolute path; the archive was refused.")
    if any(part == ".." for part in path.parts):
        raise UploadError(f"The zip entry '{name}' points outside the archive ('..'); the archive was refused.")
    return path


def zip_read(read, name: str):
    """``read()``, with a broken archive turned into an UploadError that names the entry."""
    try:
        return read()
    except ZIP_READ_ERRORS as error:
        raise UploadError(
            f"The zip entry '{name}' could not be read: the archive is damaged ({type(error).__name__}). "
            "Create the zip again and upload it."
        ) from None


def open_zip(archive: Path, max_mb: float, max_entries: int) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """An archive opened for reading and its entries, refused (UploadError) when too large, with too many entries,
    or not a zip; nothing is extracted."""
    size_mb = archive.stat().st_size / 2**20
    if size_mb > max_mb:
        raise UploadError(f"The zip is {size_mb:.0f} MB; the limit is {max_mb:g} MB.")
    try:
        zf = zipfile.ZipFile(archive)
    except ZIP_READ_ERRORS:
        raise UploadError(f"'{archive.name}' is not a valid zip archive.") from None
    infos = zf.infolist()
    if len(infos) > max_entries:
        zf.close()
        raise UploadError(f"The zip holds {len(infos)} entries; the limit is {max_entries}.")
    return zf, infos


def _read_zip(archive: Path, writer: _Writer, scratch: Path, limits: UploadLimits, kind: str | None = None) -> None:
    """Copy the images of a zip; ``kind`` None: from the folder names, else every image is of that kind."""
    zf, infos = open_zip(archive, limits.max_archive_mb, limits.max_archive_entries)
    with zf:
        # check every name and the total size before extracting a single byte
        total = 0
        for info in infos:
            path = check_zip_entry_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadError(f"The zip entry '{info.filename}' is a symbolic link; the archive was refused.")
            total += info.file_size
        if total > limits.max_unpacked_mb * 2**20:
            raise UploadError(
                f"The zip would unpack to {total / 2**20:.0f} MB; the limit is {limits.max_unpacked_mb:g} MB."
            )
        scratch.mkdir(parents=True, exist_ok=True)
        for index, info in enumerate(infos):
            if info.is_dir():
                continue
            path = check_zip_entry_name(info.filename)
            if (
                any(p.lower() in JUNK_DIRS for p in path.parts)
                or path.name.lower() in JUNK_NAMES
                or path.name.startswith("._")
            ):
                writer.dataset.skipped.append(info.filename)
                continue
            if not _is_image_name(path.name):
                raise UploadError(
                    f"The zip entry '{info.filename}' is not an image ({', '.join(IMAGE_EXTENSIONS)}); "
                    "remove it and upload again."
                )
            if info.file_size > limits.max_file_mb * 2**20:
                raise UploadError(
                    f"The zip entry '{info.filename}' is {info.file_size / 2**20:.0f} MB; "
                    f"the limit per image is {limits.max_file_mb:g} MB."
                )
            # extract by streaming to a name we choose, never to the name in the archive; errors reading the
            # archive are the upload's fault (a message), errors writing the copy are the server's (raised)
            temporary = scratch / f"entry_{index}{path.suffix.lower()}"
            source = zip_read(lambda: zf.open(info), info.filename)
            with source, open(temporary, "wb") as target:
                copied = 0
                while chunk := zip_read(lambda: source.read(1 << 20), info.filename):
                    copied += len(chunk)
                    if copied > limits.max_file_mb * 2**20:
                        raise UploadError(f"The zip entry '{info.filename}' is larger than it claims; refused.")
                    target.write(chunk)
            writer.add(kind or _kind_of(path.parts), temporary, str(path))
            temporary.unlink()


def _paths(files) -> list[Path]:
    if files is None:
        return []
    if isinstance(files, (str, Path)):
        files = [files]
    out = []
    for f in files:
        if not isinstance(f, (str, Path)):  # gradio may hand over file objects whose .name is the path
            f = getattr(f, "path", None) or f.name
        out.append(Path(str(f)))
    return out


def prepare_dataset(
    dest: str | Path,
    normal_files=None,
    defect_files=None,
    mask_files=None,
    limits: UploadLimits = UploadLimits(),
) -> UploadedDataset:
    """Validate uploads and copy them under ``dest``; raise :class:`UploadError` with a message when refused.

    ``normal_files`` is a list of image paths, or a single ``.zip`` (which may
    also hold ``defect/`` and ``mask/`` folders). ``defect_files`` and
    ``mask_files`` are lists of image paths (or a zip each).
    """
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    writer = _Writer(dest, limits)
    scratch = dest / ".unpack"
    try:
        for kind, files in (("normal", normal_files), ("defect", defect_files), ("mask", mask_files)):
            for path in _paths(files):
                if not path.is_file():
                    raise UploadError(f"The uploaded file '{path.name}' is missing on the server; upload it again.")
                if path.suffix.lower() == ".zip":
                    # a zip in the normal box may hold defect/ and mask/ folders; in the other boxes
                    # every image in it is of that box's kind
                    _read_zip(path, writer, scratch, limits, None if kind == "normal" else kind)
                else:
                    writer.add(kind, path, path.name)
        return writer.finish()
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
