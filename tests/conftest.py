"""Guards every test: binds only to loopback, leaves no thread behind."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# CI (CI=true) runs every property test on a fixed seed so that a landing never depends on luck; local runs
# keep exploring new examples, which is how the fuzz tests find new bugs. No deadlines: a loaded 2-core
# machine makes timing-based failures meaningless.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

_real_bind = socket.socket.bind


def _loopback_only(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            ok = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise AssertionError(f"test tried to bind {address!r}: tests bind only to 127.0.0.0/8 or ::1")
    _real_bind(self, address)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("netns") is None:
        monkeypatch.setattr(socket.socket, "bind", _loopback_only)


# Threads that belong to the interpreter or to libraries' process-wide pools, not to a test.
_IGNORED_THREAD_PREFIXES = ("asyncio_", "pydevd", "ThreadPoolExecutor-")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [
            t for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith(_IGNORED_THREAD_PREFIXES)
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"test left threads running: {[t.name for t in leaked]}"
