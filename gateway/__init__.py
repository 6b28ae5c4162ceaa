"""Ampgate: a secure-by-default energy gateway.

The core (this package) knows no protocol: it holds the event bus, the entity states, the service
registry, the plugin loader, configuration and the security layer. Protocols live in ``plugins/``.
"""

from __future__ import annotations

__version__ = "0.1.0"
