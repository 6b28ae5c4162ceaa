"""The policy engine: rules over the whole configuration and every exposure, findings, accepted risks.

Contract:
- A ``Rule`` has a stable id, a severity (warn / refuse / never), the recommended setting and why it
  matters; its ``check`` reads a ``PolicyInput`` and yields ``Finding``s. Behaviour rules (enforced by code,
  not by configuration) have no check and appear in the catalogue only.
- ``evaluate()`` matches findings against ``gateway.accept_risk`` entries (rule, optional plugin, reason,
  optional expiry). An expired acceptance no longer counts; a ``never`` finding cannot be accepted and the
  report says so. ``Report.refused`` is what stops ``ampgate run``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.security.exposure import Announcement, Exposure, Listener, Outbound
from gateway.security.netaddr import HostInfo

if TYPE_CHECKING:
    from gateway.config import Config


class Severity(StrEnum):
    WARN = "warn"
    REFUSE = "refuse"
    NEVER = "never"  # a refusal no accept_risk can lift
    BEHAVIOUR = "behaviour"  # enforced by code; listed in the catalogue, no check


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ACCEPTED = "accepted"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    rule_id: str
    plugin: str  # "gateway" for the core
    config_path: tuple[str | int, ...]
    actual: str
    message: str
    fix: str
    severity: Severity | None = None  # overrides the rule's (TLS-005: warn, refuse once expired)


@dataclass(slots=True)
class PolicyInput:
    config: Config
    exposures: list[Exposure]
    host: HostInfo
    today: dt.date
    data_dir: Path | None = None
    blocked_plugins: dict[str, str] = field(default_factory=dict)  # third-party, not in allow_plugins
    dependents: dict[str, set[str]] = field(default_factory=dict)  # plugin -> enabled plugins needing it
    silent_plugins: set[str] = field(default_factory=set)  # plugins that need no exposure (NET-004)

    def listeners(self) -> list[Listener]:
        return [e for e in self.exposures if isinstance(e, Listener)]

    def outbounds(self) -> list[Outbound]:
        return [e for e in self.exposures if isinstance(e, Outbound)]

    def announcements(self) -> list[Announcement]:
        return [e for e in self.exposures if isinstance(e, Announcement)]


Check = Callable[[PolicyInput], Iterable[Finding]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    title: str
    severity: Severity
    recommended: str
    why: str
    check: Check | None = None
    plugin: str = "gateway"  # who defines the rule

    @property
    def acceptable(self) -> bool:
        return self.severity is Severity.REFUSE


def rule_factory(plugin: str) -> Callable[..., Rule]:
    """``rule(id, title, severity, recommended, why, check=None)`` for one plugin's catalogue."""

    def rule(id: str, title: str, severity: Severity, recommended: str, why: str, check: Check | None = None) -> Rule:
        return Rule(id=id, title=title, severity=severity, recommended=recommended, why=why, check=check,
                    plugin=plugin)

    return rule


@dataclass(frozen=True, slots=True)
class Acceptance:
    rule: str
    reason: str
    plugin: str | None = None
    expires: dt.date | None = None

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> Acceptance:
        return cls(entry["rule"], entry["reason"], entry.get("plugin"), entry.get("expires"))

    def matches(self, finding: Finding) -> bool:
        return self.rule == finding.rule_id and (self.plugin is None or self.plugin == finding.plugin)

    def expired(self, today: dt.date) -> bool:
        return self.expires is not None and self.expires < today


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report: a finding, its rule, and what became of it."""

    finding: Finding
    rule: Rule
    status: Status
    where: str  # file:line of the setting, or the config path
    note: str = ""  # why an acceptance did or did not apply
    acceptance: Acceptance | None = None

    @property
    def severity(self) -> Severity:
        return self.finding.severity or self.rule.severity

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "title": self.rule.title,
            "severity": self.severity.value,
            "status": self.status.value,
            "plugin": self.finding.plugin,
            "setting": ".".join(str(p) for p in self.finding.config_path),
            "where": self.where,
            "recommended": self.rule.recommended,
            "actual": self.finding.actual,
            "message": self.finding.message,
            "why": self.rule.why,
            "fix": self.finding.fix,
            "note": self.note,
            "accepted_reason": self.acceptance.reason if self.acceptance else None,
            "accepted_until": self.acceptance.expires.isoformat()
            if self.acceptance and self.acceptance.expires
            else None,
        }


@dataclass(slots=True)
class Report:
    rows: list[Row]
    unused_acceptances: list[Acceptance]

    @property
    def refused(self) -> list[Row]:
        return [r for r in self.rows if r.status is Status.REFUSED]

    @property
    def accepted(self) -> list[Row]:
        return [r for r in self.rows if r.status is Status.ACCEPTED]

    @property
    def warnings(self) -> list[Row]:
        return [r for r in self.rows if r.status is Status.WARNING]

    @property
    def exit_code(self) -> int:
        return 1 if self.refused else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "refused": len(self.refused),
            "accepted": len(self.accepted),
            "warnings": len(self.warnings),
            "findings": [r.as_dict() for r in self.rows],
            "unused_acceptances": [
                {"rule": a.rule, "plugin": a.plugin, "reason": a.reason} for a in self.unused_acceptances
            ],
        }


class DuplicateRule(ValueError):
    pass


def catalogue(rule_sets: Iterable[Sequence[Rule]]) -> dict[str, Rule]:
    """Merge the core's and the plugins' rules; an id defined twice is an error (ids are stable)."""
    rules: dict[str, Rule] = {}
    for rule_set in rule_sets:
        for rule in rule_set:
            if rule.id in rules:
                raise DuplicateRule(f"policy rule {rule.id} defined twice ({rules[rule.id].plugin}, {rule.plugin})")
            rules[rule.id] = rule
    return rules


def evaluate(rules: dict[str, Rule], data: PolicyInput) -> Report:
    acceptances = [Acceptance.from_config(e) for e in data.config.core.get("accept_risk", [])]
    used: set[int] = set()
    rows: list[Row] = []
    for rule in rules.values():
        if rule.check is None:
            continue
        for finding in rule.check(data):
            mark = data.config.where(*finding.config_path) if finding.config_path else None
            where = str(mark) if mark else ".".join(str(p) for p in finding.config_path)
            severity = finding.severity or rule.severity
            if severity is Severity.WARN:
                rows.append(Row(finding, rule, Status.WARNING, where))
                continue
            match = next(((i, a) for i, a in enumerate(acceptances) if a.matches(finding)), None)
            if match is None:
                rows.append(Row(finding, rule, Status.REFUSED, where))
                continue
            index, acceptance = match
            used.add(index)
            if severity is Severity.NEVER:
                note = f"{rule.id} can never be accepted: the setting itself must change"
                rows.append(Row(finding, rule, Status.REFUSED, where, note))
            elif acceptance.expired(data.today):
                assert acceptance.expires is not None
                note = f"the acceptance expired on {acceptance.expires.isoformat()}"
                rows.append(Row(finding, rule, Status.REFUSED, where, note))
            else:
                rows.append(Row(finding, rule, Status.ACCEPTED, where, "accepted", acceptance))
    order = {Status.REFUSED: 0, Status.ACCEPTED: 1, Status.WARNING: 2, Status.OK: 3}
    rows.sort(key=lambda r: (order[r.status], r.rule.id, r.finding.plugin))
    unused = [a for i, a in enumerate(acceptances) if i not in used]
    return Report(rows, unused)
