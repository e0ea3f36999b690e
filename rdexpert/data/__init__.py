"""Datasets and robust image loading for RD with Expert.

The package is split by role; every public name is re-exported here, so
``from rdexpert.data import X`` works for all of them (each module's ``__all__``):

* :mod:`.images`: reading image/mask files and arrays, fitting them to the square
  input, conversion to tensors (what inference needs): ``files``, ``decode``,
  ``masks``, ``fit``, ``tensors``;
* :mod:`.layouts`: listing the samples of MVTec-style, MVTec AD 2, VisA, plain-folder
  and anomalib Folder datasets, and the holdout split (no torch ``Dataset``):
  ``samples``, ``mvtec``, ``visa``, ``folder``, ``anomalib``, ``holdout``, ``listing``;
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
