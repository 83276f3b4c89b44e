import sys

from wsguard.cli import main

sys.exit(main())
