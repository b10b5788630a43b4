"""`python -m diffcore ...`: the CLI (see `diffcore.cli`)."""

import sys

from diffcore.cli import main

sys.exit(main())
