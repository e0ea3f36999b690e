"""``python -m rdexpert …`` is ``rdexpert …`` (also under ``torchrun … -m rdexpert``)."""

import sys

from rdexpert.cli import main

sys.exit(main())
