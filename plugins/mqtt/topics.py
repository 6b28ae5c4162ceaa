"""The topic tree one gateway owns, and the checks on topics that come from outside. No I/O.

Layout (docs/plugins/mqtt.md)::

    <prefix>/status                            online | offline, retained, also the last will
    <prefix>/<entity_id>/state                 the value, retained
    <prefix>/<entity_id>/attributes            {"unit": ..., "attributes": {...}}, retained
    <prefix>/cmd/<domain>/<service>            commands in (JSON object), never retained
    <prefix>/cmd/<domain>/<service>/result     replies, unless the command named an MQTT 5 response topic
    <prefix>/reply/...                         the only response topics allowed under our own prefix

Entity ids are ``<domain>.<object_id>`` of ``[a-z0-9_]`` (``gateway.states``), so an entity level always holds
a dot and can never collide with ``status`` or ``cmd``; the ``cmd/+/+`` filter never matches a ``.../result``
reply, so the gateway does not hear its own answers.

Contract: ``validate_prefix`` and ``check_response_topic`` raise ``ValueError`` with a message for a person;
``parse_command`` returns ``None`` for a topic outside the command tree and never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .const import (
    ATTRIBUTES_SUFFIX,
    COMMAND_LEVEL,
    MAX_RESPONSE_TOPIC_BYTES,
    REPLY_LEVEL,
    RESULT_LEVEL,
    STATE_SUFFIX,
    STATUS_LEVEL,
)

# A prefix level: letters, digits, '_', '-', '.'. Narrower than MQTT allows (any UTF-8 but '+', '#' and NUL,
# MQTT 5 §4.7) on purpose: the prefix ends up in broker ACLs (Mosquitto's %u/%c patterns must fill a whole
# level) and in Home Assistant node ids, and both are easier to get right with plain names.
_PREFIX_LEVEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_PREFIX_LEVELS = 8
_NAME = re.compile(r"^[a-z0-9_]{1,64}$")  # a service domain or name, as gateway.services uses them


def validate_prefix(value: str) -> str:
    """A topic prefix such as ``ampgate/site1``: levels of ``[A-Za-z0-9_.-]``, no wildcards, no leading ``$``."""
    if not isinstance(value, str) or not value:
        raise ValueError("expected a topic prefix such as ampgate/site1")
    levels = value.split("/")
    if len(levels) > MAX_PREFIX_LEVELS:
        raise ValueError(f"a prefix of at most {MAX_PREFIX_LEVELS} levels")
    for level in levels:
        if not _PREFIX_LEVEL.match(level):
            raise ValueError(f"prefix level {level!r} must be 1-64 letters, digits, '_', '-' or '.' "
                             "(no empty level, no leading or trailing '/', no '+' or '#')")
    if value.startswith("$"):
        raise ValueError("topics starting with '$' are reserved for the broker (MQTT 5 §4.7.2)")
    return value


def slug(text: str) -> str:
    """``[a-z0-9_-]`` only: for client ids and Home Assistant node ids derived from names."""
    out = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_")
    return out or "ampgate"


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one gateway, built from its prefix (validated by the caller)."""

    prefix: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{STATUS_LEVEL}"

    def state(self, entity_id: str) -> str:
        return f"{self.prefix}/{entity_id}/{STATE_SUFFIX}"

    def attributes(self, entity_id: str) -> str:
        return f"{self.prefix}/{entity_id}/{ATTRIBUTES_SUFFIX}"

    @property
    def command_filter(self) -> str:
        return f"{self.prefix}/{COMMAND_LEVEL}/+/+"

    def command(self, domain: str, service: str) -> str:
        return f"{self.prefix}/{COMMAND_LEVEL}/{domain}/{service}"

    def result(self, command_topic: str) -> str:
        return f"{command_topic}/{RESULT_LEVEL}"

    def parse_command(self, topic: str) -> tuple[str, str] | None:
        """``(domain, service)`` for ``<prefix>/cmd/<domain>/<service>``; ``None`` for anything else.

        The levels are returned even when they are not valid service names: the caller answers those with
        an error, which needs to know it was a command topic."""
        head = f"{self.prefix}/{COMMAND_LEVEL}/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head):].split("/")
        if len(rest) != 2 or not rest[0] or not rest[1]:
            return None
        return rest[0], rest[1]

    @property
    def reply_root(self) -> str:
        return f"{self.prefix}/{REPLY_LEVEL}"

    def owns(self, topic: str) -> bool:
        return topic == self.prefix or topic.startswith(self.prefix + "/")


def valid_name(text: str) -> bool:
    return bool(_NAME.match(text))


def check_response_topic(topic: str, *, forbidden_roots: tuple[str, ...], allowed_roots: tuple[str, ...] = ()) -> str:
    """A response topic named by a command (MQTT 5 §4.10) that we are willing to publish to.

    The sender picks it, so without a check a command could make the gateway publish into its own state tree
    (spoofing a state other subscribers trust) or into the discovery tree. Refused: wildcards and NUL (not
    valid in a PUBLISH, §4.7.3), a leading ``$``, more than ``MAX_RESPONSE_TOPIC_BYTES``, and anything under
    a forbidden root (the gateway's prefix, the Home Assistant discovery prefix) unless it is also under an
    allowed root (``<prefix>/reply``, a subtree nobody reads as state)."""
    try:
        encoded = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("response topic must be valid UTF-8") from None
    if not topic or len(encoded) > MAX_RESPONSE_TOPIC_BYTES:
        raise ValueError(f"response topic must be 1-{MAX_RESPONSE_TOPIC_BYTES} bytes")
    if any(c in topic for c in "+#\x00"):
        raise ValueError("response topic must not contain '+', '#' or NUL")
    if topic.startswith("$"):
        raise ValueError("response topic must not start with '$'")
    if any(topic.startswith(root + "/") for root in allowed_roots):
        return topic
    for root in forbidden_roots:
        if topic == root or topic.startswith(root + "/"):
            allowed = f" (except {allowed_roots[0]}/...)" if allowed_roots else ""
            raise ValueError(f"response topic must not be under {root}/{allowed}")
    return topic
