from __future__ import annotations

import io
import logging

import pytest

from gateway.log import REDACTOR, setup_logging


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    setup_logging("debug", out)
    yield out
    REDACTOR.clear()
    setup_logging("warning")


@pytest.mark.parametrize("message", [
    "connecting with password=hunter2hunter2",
    'payload {"token": "abcd1234efgh"}',
    "Authorization: Basic Y3AwMTpzM2NyZXQ=",
    "header Bearer eyJhbGciOiJIUzI1NiJ9.abc",
    "url mqtts://gateway:s3cretpw@broker.lan:8883",
    "pin: 38475610",
])
def test_credential_patterns_are_redacted(stream: io.StringIO, message: str) -> None:
    logging.getLogger("plugins.x").warning(message)
    out = stream.getvalue()
    for secret in ("hunter2hunter2", "abcd1234efgh", "Y3AwMTpzM2NyZXQ=", "eyJhbGciOiJIUzI1NiJ9.abc",
                   "s3cretpw", "38475610"):
        assert secret not in out
    assert "***" in out


def test_known_secret_values_are_redacted_anywhere(stream: io.StringIO) -> None:
    REDACTOR.add(["Zx9-unusual-value"])
    logging.getLogger("plugins.x").info("station sent Zx9-unusual-value in a frame")
    logging.getLogger("plugins.x").info("and again: %s", "Zx9-unusual-value")
    assert "Zx9-unusual-value" not in stream.getvalue()
    assert stream.getvalue().count("***") == 2
