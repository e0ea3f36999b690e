"""What every command prints and checks first: one-line, always-encodable text and writable output folders."""

from __future__ import annotations


def check_output(folder, what: str = "output folder") -> None:
    """Refuse a read-only, impossible or full output location before any model is loaded or image read."""
    from rdexpert.checkpoint.io import check_writable

    check_writable(folder, what=what)


def printable(text) -> str:
    """Text that always encodes: the bytes of a file name that are not UTF-8 (a Latin-1 name ...) appear as \\xNN."""
    text = str(text)
    try:
        return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that does not stand for a byte
        return text.encode("utf-8", errors="backslashreplace").decode("utf-8")

