"""``python -m lua_core.bench``: the speed and memory harness (see :mod:`lua_core.bench.cli`)."""
import sys

from .cli import main

sys.exit(main())
