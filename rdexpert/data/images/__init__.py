"""Turning an image or mask file (or an in-memory image) into the model's input tensor.

Why this package exists: it is everything inference and export need to read an
image, and nothing more (no dataset layouts, no torch ``Dataset``). One module
per step; every public name is re-exported here, so
``from rdexpert.data.images import X`` (and ``from rdexpert.data import X``) works:

* :mod:`.files`: which files are images, the sorted images of a folder;
* :mod:`.decode`: an image file or array -> ``H x W x 3`` uint8 RGB;
* :mod:`.masks`: a mask file or folder of mask parts -> ``H x W`` bool;
* :mod:`.fit`: fitting to the square ``S x S`` input ("squash" or "pad") and the picture's
  :class:`ContentBox` there;
* :mod:`.tensors`: RGB / mask arrays -> float32 tensors ``3 x S x S`` in [0, 1] / ``1 x S x S`` in {0, 1}.
"""
from rdexpert.data.images import decode, files, fit, masks, tensors
from rdexpert.data.images.decode import *  # noqa: F403
from rdexpert.data.images.files import *  # noqa: F403
from rdexpert.data.images.fit import *  # noqa: F403
from rdexpert.data.images.masks import *  # noqa: F403
from rdexpert.data.images.tensors import *  # noqa: F403

__all__: list[str] = []
for _module in (files, decode, masks, fit, tensors):
    __all__ += _module.__all__
del _module
