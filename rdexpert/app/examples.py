"""The example images, per product: what Inspect and Ablations offer to click for the selected checkpoint.

``assets/examples/<product>/`` holds a few test images of one product (its folder name is the ``dataset.category``
of the checkpoints trained on it): ``good_<name>.<ext>`` are normal, ``defect_<name>.<ext>`` defective, and
``defect_<name>_mask.png`` is a defective image's ground-truth mask (never an example itself). The galleries show
the selected checkpoint's product; a checkpoint of a product without examples (a fine-tune, another category)
gets every product's, each captioned with its product, so there is always something to try.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXTENSIONS = (".png", ".jpg", ".jpeg")
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Example:
    path: str
    product: str
    truth: str  # "normal" or "defective"
    name: str  # the file's name in the dataset it was taken from (after good_/defect_)
    mask: str | None = None  # the ground-truth mask of a defective image, when shipped

    @property
    def caption(self) -> str:
        return f"{self.truth}: {self.name}"


def _examples(folder: Path, product: str) -> list[Example]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file()]
    out = []
    for path in sorted(files, key=lambda p: (not p.name.startswith("good_"), p.name)):
        if not path.name.startswith(("good_", "defect_")) or path.stem.endswith(MASK_SUFFIX):
            continue
        truth = "normal" if path.name.startswith("good_") else "defective"
        mask = path.with_name(f"{path.stem}{MASK_SUFFIX}.png")
        out.append(Example(str(path), product, truth, path.stem.split("_", 1)[1],
                           str(mask) if mask.is_file() else None))
    return out


class ExampleSet:
    """Every product's examples (products in folder order: alphabetical)."""

    def __init__(self, products: dict[str, list[Example]] | None = None, root: Path | None = None):
        self.products = {name: list(found) for name, found in (products or {}).items() if found}
        self.root = root  # the folder served to the page (allowed_paths)

    @classmethod
    def scan(cls, root: str | Path) -> ExampleSet:
        """``root``/<product>/ folders (missing root: no examples)."""
        root = Path(root)
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        return cls({folder.name: _examples(folder, folder.name) for folder in folders}, root)

    @property
    def all(self) -> list[Example]:
        return [example for found in self.products.values() for example in found]

    def find(self, path) -> Example | None:
        """The example whose file is ``path`` (None for any other source: an upload, an array)."""
        if not isinstance(path, (str, Path)):
            return None
        return next((e for e in self.all if e.path == str(path)), None)

    def known(self, category: str | None) -> bool:
        return category in self.products

    def for_category(self, category: str | None) -> list[Example]:
        """The product's examples; for a product without any, every product's."""
        return list(self.products[category]) if self.known(category) else self.all

    def gallery(self, category: str | None) -> list[tuple[str, str]]:
        """(path, caption) pairs for a gallery; captions name the product when several products are shown."""
        if self.known(category):
            return [(e.path, e.caption) for e in self.products[category]]
        return [(e.path, f"{e.product} · {e.caption}") for e in self.all]

    def label(self, category: str | None) -> str:
        """What the gallery shows, for its label."""
        if self.known(category):
            return f"{category} test images"
        if not self.products:
            return "no example images"
        return f"test images of {', '.join(self.products)}: no examples of {category or 'this product'}"
