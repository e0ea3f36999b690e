"""The ``rdexpert`` command: train, test, predict, export and push, in the vocabulary anomalib users know.

Wherever a checkpoint is taken (``--checkpoint``) it may be a local folder or a
Hugging Face Hub address ``ORG/NAME/CATEGORY[@REVISION]`` (see rdexpert.hub.resolve).
An error is one line (``rdexpert COMMAND: error: ...``, exit status 2), checked before
any compute where it can be (an output folder that cannot be written or is full);
set RDEXPERT_DEBUG=1 for the full traceback.
"""

DESCRIPTION = __doc__

from rdexpert.cli.flags import train_config_from_args  # noqa: E402
from rdexpert.cli.main import build_parser, main  # noqa: E402

__all__ = ["build_parser", "main", "train_config_from_args"]
