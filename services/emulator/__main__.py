"""``python -m services.emulator``: the emulator's server (``services.emulator.server``)."""

import sys

from .server import main

sys.exit(main())
