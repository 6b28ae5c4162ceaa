"""Escaping by default: nothing from data becomes markup, in text or in attributes."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.states import State
from plugins.web import views
from plugins.web.html import Markup, attrs, esc, h, join


def test_values_are_escaped_markup_is_not() -> None:
    out = h('<a title="{t}">{body}</a>{safe}', t='"><script>x</script>', body="<b>&", safe=Markup("<i>ok</i>"))
    assert out == '<a title="&quot;&gt;&lt;script&gt;x&lt;/script&gt;">&lt;b&gt;&amp;</a><i>ok</i>'
    assert join(["<", Markup("<br>")]) == "&lt;<br>"
    assert attrs(data_entity="a\"b", hidden=True, skip=None) == ' data-entity="a&quot;b" hidden'


@given(st.text())
def test_no_text_escapes_its_context(value: str) -> None:
    """Contract: an escaped value contains no raw < > " ' and every & starts an entity."""
    out = esc(value)
    assert not set(out) & set("<>\"'")
    assert re.fullmatch(r"([^&]|&(amp|lt|gt|quot|#x27);)*", out, re.DOTALL)


def test_a_hostile_entity_value_stays_text_in_the_page() -> None:
    frame = views.Frame(site="<site>", principal=None)
    state = State("sensor.x", "<img src=x onerror=alert(1)>", "<u>")
    page = views.overview_page(frame, flow=views_flow([state]), chargers=[], states=[state], pending=0, posture={})
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<site>" not in page


def views_flow(states: list[State]) -> object:
    from plugins.web.overview import power_flow

    return power_flow(states)


def test_formatting_matches_the_script_rules() -> None:
    assert views.fmt_value(7200.0, "W") == "7.20 kW"
    assert views.fmt_value(999.5, "W") == "999.5 W"
    assert views.fmt_value(12, "A") == "12 A"
    assert views.fmt_value(True) == "on" and views.fmt_value(None) == "—"
    assert views.fmt_value(float("nan"), "W") == "—"
    assert views.fmt_power(-1500.0) == "-1.50 kW" and views.fmt_power(None) == "—"
