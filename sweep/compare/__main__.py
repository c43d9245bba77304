"""`python -m sweep.compare`."""

import sys

from sweep.compare.cli import main

sys.exit(main())
