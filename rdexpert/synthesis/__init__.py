"""DRAEM-style synthetic anomalies: Perlin-noise masks filled with a texture.

Every training image ``x`` gets an augmented twin ``x_aug`` and a binary mask
``M`` (docs/design.md §3.1)::

    x_aug = x * (1 - M) + (1 - beta) * tex * M + beta * x * M,   beta ~ U(0, 0.8)

* ``M`` is 2-D gradient Perlin noise with a random lattice of 2^a x 2^b cells
  (a, b uniform in {0..5}), rotated by a random angle in [-90, 90] degrees and
  thresholded at 0.5.  For object categories it is intersected with a
  foreground mask of the object so anomalies do not land on the background.
* ``tex`` is a texture image (e.g. DTD) resized to the image size, or a
  procedural texture when no texture folder is given.

Conventions: images are float32 ``HxWx3`` RGB arrays in [0, 1]; masks are
float32 ``HxW`` arrays in {0, 1} (foreground masks are bool ``HxW``).  All
randomness comes from the ``numpy.random.Generator`` passed in, so results are
reproducible under a seed.  Everything here is picklable, so the synthesizer
can live inside ``torch.utils.data.DataLoader`` workers.

The package is split by role; every public name is re-exported here, so
``from rdexpert.synthesis import X`` works for all of them (each module's ``__all__``):

* :mod:`.perlin`: Perlin noise and the binary anomaly masks ``M``;
* :mod:`.foreground`: the per-category foreground table and foreground masks;
* :mod:`.textures`: texture folders (DTD), procedural textures and their jitter;
* :mod:`.synthesizer`: the blend and :class:`AnomalySynthesizer`, which ties them together.
"""
from rdexpert.synthesis import foreground, perlin, synthesizer, textures
from rdexpert.synthesis.foreground import *  # noqa: F403
from rdexpert.synthesis.perlin import *  # noqa: F403
from rdexpert.synthesis.synthesizer import *  # noqa: F403
from rdexpert.synthesis.textures import *  # noqa: F403

__all__: list[str] = []
__all__ += foreground.__all__
__all__ += perlin.__all__
__all__ += textures.__all__
__all__ += synthesizer.__all__
