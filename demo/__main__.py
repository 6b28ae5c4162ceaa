"""``python -m demo``: the same as ``ampgate demo``."""

from __future__ import annotations

import sys

from demo.main import main

sys.exit(main())
