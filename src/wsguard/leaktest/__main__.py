"""``python -m wsguard.leaktest``: the same as ``wsguard leakcheck``."""

import sys

from wsguard.leaktest.cli import main

sys.exit(main())
