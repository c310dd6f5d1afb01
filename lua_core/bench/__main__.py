"""``python -m lua_core.bench``: the speed and memory harness (see :mod:`lua_core.bench.harness`)."""
import sys

from .harness import main

sys.exit(main())
