"""Which files are images, and the sorted image files of a folder.

Why this module exists: the dataset layouts, the mask loader (MVTec LOCO mask
folders) and ``rdexpert predict --input <folder>`` all need the same answer to
"which files in this folder are images"; it depends on names only, not pixels.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "list_images"]

#: Accepted image file extensions (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_EXT_HELP = ", ".join(IMAGE_EXTENSIONS)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Sorted image files of an existing ``folder`` (hidden files skipped)."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((p for p in it if _is_image(p)), key=lambda p: str(p))


def list_images(folder: str | Path, recursive: bool = False, must_exist: bool = True) -> list[Path]:
    """Sorted image files in ``folder`` (extensions in IMAGE_EXTENSIONS, case-insensitive).

    Hidden files (``.DS_Store``, macOS ``._*`` resource forks) are skipped.
    Raises FileNotFoundError when ``must_exist`` and the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        if must_exist:
            raise FileNotFoundError(f"Image folder '{folder}' does not exist.")
        return []
    return _image_files(folder, recursive)
