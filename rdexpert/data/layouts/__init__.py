"""Dataset layouts: listing the samples of a dataset, and the holdout split.

Why this package exists: finding which files are normal, defective and which
mask goes with which image is a question of folder layout only; it needs no
pixel decoding and no torch ``Dataset``, so the app and the CLI can list and
validate datasets cheaply. One module per layout; every public name is
re-exported here, so ``from rdexpert.data.layouts import X`` (and
``from rdexpert.data import X``) works:

* :mod:`.samples`: the :class:`Sample` record and the folder checks all layouts share;
* :mod:`.mvtec`: MVTec AD and look-alikes (MPDD, BTAD, MVTec 3D-AD RGB, MVTec LOCO), and MVTec AD 2;
* :mod:`.visa`: VisA, from its split CSV;
* :mod:`.folder`: plain folders of normal (and defective, mask) images;
* :mod:`.anomalib`: anomalib's ``Folder`` layout (:class:`AnomalibFolder`);
* :mod:`.holdout`: the seeded (train, held-out) split of normal training images;
* :mod:`.listing`: the entry point: layout names and strings, layout detection,
  :func:`list_samples`, a dataset's held-out normals, its category folders.
"""
from rdexpert.data.layouts import anomalib, folder, holdout, listing, mvtec, samples, visa
from rdexpert.data.layouts.anomalib import *  # noqa: F403
from rdexpert.data.layouts.folder import *  # noqa: F403
from rdexpert.data.layouts.holdout import *  # noqa: F403
from rdexpert.data.layouts.listing import *  # noqa: F403
from rdexpert.data.layouts.mvtec import *  # noqa: F403
from rdexpert.data.layouts.samples import *  # noqa: F403
from rdexpert.data.layouts.visa import *  # noqa: F403

__all__: list[str] = []
for _module in (samples, mvtec, visa, folder, anomalib, holdout, listing):
    __all__ += _module.__all__
del _module
