"""``python -m bench.ab``: see :mod:`bench.ab`."""

import sys

from bench.ab.cli import main

sys.exit(main())
