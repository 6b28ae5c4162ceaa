"""``python -m gateway`` is ``ampgate``."""

from __future__ import annotations

import sys

from gateway.cli import main

sys.exit(main())
