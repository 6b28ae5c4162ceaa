"""The exceptions the core raises, modelled on ``homeassistant/exceptions.py``.

Plugins catch protocol errors themselves; what crosses into the core is one of these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.context import Context


class GatewayError(Exception):
    """Base class for every error the core raises."""


class ConfigError(GatewayError):
    """The configuration cannot be used; ``errors`` holds every problem found, not just the first."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class PolicyRefused(GatewayError):
    """The configuration combines exposures insecurely; the report says which rule and how to fix it."""


class ServiceNotFound(GatewayError):
    """A service that no plugin registered was called."""

    def __init__(self, domain: str, service: str) -> None:
        super().__init__(f"service {domain}.{service} not found")
        self.domain = domain
        self.service = service


class ServiceValidationError(GatewayError):
    """The data given to a service does not match its schema."""


class DuplicateRegistration(GatewayError):
    """A plugin, service or entity id was registered twice (fails loudly, like evcc's registry)."""


class Unauthorized(GatewayError):
    """The caller named by ``context`` may not do what it asked; kept so the audit can say who."""

    def __init__(self, context: Context, permission: str) -> None:
        super().__init__(f"{context.describe()} may not {permission}")
        self.context = context
        self.permission = permission


class PluginError(GatewayError):
    """A plugin failed to load or set up."""
