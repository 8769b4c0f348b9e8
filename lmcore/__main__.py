"""``python -m lmcore``: see :mod:`lmcore.cli`."""

import sys

from lmcore.cli import main

sys.exit(main())
