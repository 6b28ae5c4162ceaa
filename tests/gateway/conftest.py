"""Fixtures shared by the core's tests: a real database on a temporary data dir, and its audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.security.audit import AuditLog
from gateway.storage import Storage


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    s = Storage(tmp_path).open()
    yield s
    s.close()


@pytest.fixture
def audit(storage: Storage) -> AuditLog:
    return AuditLog(storage)
