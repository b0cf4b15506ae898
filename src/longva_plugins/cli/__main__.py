"""``python -m longva_plugins.cli``: the ``longva-plugins`` command (for scripts that run it with a
given interpreter)."""

import sys

from longva_plugins.cli import main

sys.exit(main())
