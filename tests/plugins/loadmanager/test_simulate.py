"""``ampgate simulate``: the shipped scenarios keep every guarantee over a whole day, the command prints its
summary, draws the picture, and says how to get matplotlib when it is missing."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from plugins.loadmanager.simulate import Summary, Trace, load_scenario, run

SCENARIOS = Path(__file__).resolve().parents[3] / "plugins" / "loadmanager" / "scenarios"

SMALL = """
title: two cars on 16 A
site: {fuse_a: 16, margin_a: 1, min_run_time: 5m}
start: "08:00"
end: "09:00"
step: 5s
chargers:
  a: {phases: 3}
  b: {phases: 3}
base_load: [{at: "08:00", a: [2, 2, 2]}]
cars:
  - {charger: a, arrive: "08:00", leave: "09:00", need_kwh: 50}
  - {charger: b, arrive: "08:05", leave: "09:00", need_kwh: 50}
limits:
  - {at: "08:30", limit_w: -1}
"""


@pytest.fixture(scope="module")
def days() -> dict[str, tuple[Summary, Trace]]:
    return {path.stem: run(load_scenario(path)) for path in sorted(SCENARIOS.glob("*.yaml"))}


def test_two_scenarios_ship(days: dict[str, tuple[Summary, Trace]]) -> None:
    assert set(days) == {"home", "depot"}


def test_chargers_never_hold_the_grid_above_the_fuse(days: dict[str, tuple[Summary, Trace]]) -> None:
    """Over a whole simulated day the chargers never keep a phase above fuse - margin: the only excursions are
    the one step (5 s) in which a house load switches on before the next reading."""
    for summary, _ in days.values():
        assert summary.over_fuse_by_ev_s <= 5.0, summary.lines()
        assert max(summary.over_fuse_s) <= 5.0


def test_home_day(days: dict[str, tuple[Summary, Trace]]) -> None:
    summary, trace = days["home"]
    assert [round(c.charged_wh / c.need_wh, 2) for c in summary.cars] == [1.0, 1.0, 1.0]
    home_office = summary.cars[1]
    assert home_office.pv_wh / home_office.charged_wh > 0.95  # mode pv: from the sun only
    # The meter outage, and nothing else: it counts as stale 10 s (max_age) after the last reading.
    assert 15 * 60 - 15 <= summary.failsafe_s <= 15 * 60
    evening = [c for t, c in zip(trace.times, trace.cap_w, strict=True) if 19 * 3600 <= t < 21 * 3600]
    assert set(evening) == {4200.0}


def test_depot_day(days: dict[str, tuple[Summary, Trace]]) -> None:
    summary, trace = days["depot"]
    assert summary.refused_limits and "negative" in summary.refused_limits[0]
    turns = {cid for cid, reasons in trace.reasons.items() if "paused_turn" in reasons}
    assert len(turns) >= 5  # the pool cars take turns
    assert "paused_turn" not in trace.reasons["van"] and "paused_priority" not in trace.reasons["van"]


def test_cli_prints_the_summary_and_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "small.yaml"
    scenario.write_text(textwrap.dedent(SMALL))
    out = tmp_path / "day.png"
    assert main(["simulate", str(scenario), "--plot", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scenario: two cars on 16 A" in printed and "refused limit: 08:30" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_matplotlib_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "small.yaml"
    scenario.write_text(textwrap.dedent(SMALL))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["simulate", str(scenario), "--plot", str(tmp_path / "x.png")]) == 1
    captured = capsys.readouterr()
    assert "scenario: two cars on 16 A" in captured.out  # the summary still comes
    assert "pip install 'ampgate[plot]'" in captured.err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("site: {fuse_a: 16}\nchargers: {a: {}}\ncars: [{charger: b, arrive: '08:00', leave: '09:00', need_kwh: 1}]",
     "charger 'b' is not in chargers"),
    ("site: {fuse_a: 16}\nchargers: {a: {}}\nstart: '25:00'", "expected a time of day"),
    ("chargers: {a: {}}", "site"),
])
def test_cli_reports_bad_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                   message: str) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(text)
    assert main(["simulate", str(scenario)]) == 2
    assert message in capsys.readouterr().err
