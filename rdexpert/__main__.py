"""``python -m rdexpert …`` is ``rdexpert …`` (also under ``torchrun … -m rdexpert``)."""

import sys

from .cli import main

sys.exit(main())
