"""``python -m rdexpert.cli …`` is ``rdexpert …`` (the spelling torchrun users and older scripts use)."""

import sys

from rdexpert.cli import main

sys.exit(main())
