"""Datasets and robust image loading for RD with Expert.

The package is split by role; every public name is re-exported here, so
``from rdexpert.data import X`` works for all of them (each module's ``__all__``):

* :mod:`.images`: decoding image/mask files and arrays, resizing, conversion to
  tensors (what inference needs);
* :mod:`.layouts`: listing the samples of MVTec-style, VisA and plain-folder
  datasets, and the holdout split (no torch);
* :mod:`.datasets`: the torch ``Dataset``s for evaluation and training.
"""
from rdexpert.data import datasets, images, layouts
from rdexpert.data.datasets import *  # noqa: F403
from rdexpert.data.images import *  # noqa: F403
from rdexpert.data.layouts import *  # noqa: F403

__all__: list[str] = []
__all__ += images.__all__
__all__ += layouts.__all__
__all__ += datasets.__all__
