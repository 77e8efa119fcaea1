"""``python -m client``: the same as ``benchctl``."""

import sys

from ._cli import main

sys.exit(main())
