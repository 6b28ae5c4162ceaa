"""plugins/mqtt/topics.py: the topic tree, prefix validation and response-topic checks."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.mqtt.topics import Topics, check_response_topic, slug, validate_prefix

T = Topics("ampgate/site1")


def test_layout() -> None:
    assert T.status == "ampgate/site1/status"
    assert T.state("sensor.cp01_power") == "ampgate/site1/sensor.cp01_power/state"
    assert T.attributes("sensor.cp01_power") == "ampgate/site1/sensor.cp01_power/attributes"
    assert T.command_filter == "ampgate/site1/cmd/+/+"
    assert T.result(T.command("charger", "enable")) == "ampgate/site1/cmd/charger/enable/result"
    assert T.reply_root == "ampgate/site1/reply"


def test_parse_command() -> None:
    assert T.parse_command("ampgate/site1/cmd/charger/enable") == ("charger", "enable")
    assert T.parse_command("ampgate/site1/cmd/charger/enable/result") is None  # our own answers
    assert T.parse_command("ampgate/site1/cmd/charger") is None
    assert T.parse_command("ampgate/site2/cmd/charger/enable") is None
    assert T.parse_command("ampgate/site1/cmd//enable") is None


@pytest.mark.parametrize("prefix", ["ampgate", "ampgate/site1", "fleet/eu-west/site_7", "a.b/c-d"])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "/ampgate", "ampgate/", "a//b", "a/+/b", "a/#", "$SYS/x", "a b", "ä",
                                    "a/" * 9 + "a", "x" * 65])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError):
        validate_prefix(prefix)


def test_slug() -> None:
    assert slug("Site A (Garage)") == "site_a_garage"
    assert slug("!!!") == "ampgate"


def test_response_topic_rules() -> None:
    roots = ("ampgate/site1", "homeassistant")
    assert check_response_topic("dash/replies/1", forbidden_roots=roots) == "dash/replies/1"
    assert check_response_topic("ampgate/site1/reply/x", forbidden_roots=roots,
                                allowed_roots=("ampgate/site1/reply",)) == "ampgate/site1/reply/x"
    for bad in ("ampgate/site1/sensor.x/state", "ampgate/site1", "homeassistant/sensor/x/config", "a/#", "a/+",
                "a\x00b", "$SYS/broker", "x" * 300, ""):
        with pytest.raises(ValueError):
            check_response_topic(bad, forbidden_roots=roots, allowed_roots=("ampgate/site1/reply",))


@given(st.text())
def test_response_topic_check_only_raises_value_error(topic: str) -> None:
    """Contract: any text is either returned unchanged or refused with ValueError."""
    with contextlib.suppress(ValueError):
        assert check_response_topic(topic, forbidden_roots=("a",)) == topic


@given(st.text(max_size=80))
def test_parse_command_never_raises(topic: str) -> None:
    parsed = T.parse_command(topic)
    assert parsed is None or all(parsed)
