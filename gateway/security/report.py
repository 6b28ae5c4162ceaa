"""Printing the policy report and the ports plan: text tables, JSON, nftables.

Pure functions from ``Report`` / exposures to text, so the CLI and the web console show the same thing.
"""

from __future__ import annotations

import ipaddress
import json
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.security.exposure import Announcement, Exposure, Listener, Outbound
from gateway.security.netaddr import HostInfo, is_wildcard
from gateway.security.policy import Report, Rule, Severity, Status


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], max_width: int = 48) -> list[str]:
    rows = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def report_text(report: Report) -> str:
    if not report.rows:
        lines = ["Policy: no findings. Nothing insecure is configured."]
    else:
        lines = []
        for row in report.rows:
            d = row.as_dict()
            label = {Status.REFUSED: "REFUSED", Status.ACCEPTED: "ACCEPTED", Status.WARNING: "WARNING"}.get(
                row.status, row.status.value.upper()
            )
            lines.append(f"{label:<9}{d['rule']}  {d['title']}  [{d['plugin']}]")
            details = [
                ("setting", f"{d['where']}" + (f" ({d['setting']})" if d["setting"] not in d["where"] else "")),
                ("recommended", d["recommended"]),
                ("actual", d["actual"]),
                ("problem", d["message"]),
                ("why", d["why"]),
                ("fix", d["fix"]),
            ]
            if row.note:
                details.append(("note", row.note))
            if row.acceptance:
                until = f" until {row.acceptance.expires.isoformat()}" if row.acceptance.expires else ""
                details.append(("accepted", f"{row.acceptance.reason}{until}"))
            for key, value in details:
                wrapped = textwrap.wrap(str(value), 90) or [""]
                lines.append(f"    {key + ':':<13}{wrapped[0]}")
                lines.extend(f"    {'':<13}{w}" for w in wrapped[1:])
            lines.append("")
    for acc in report.unused_acceptances:
        lines.append(f"note: accept_risk for {acc.rule}{' (' + acc.plugin + ')' if acc.plugin else ''} "
                     "matches no finding; remove it")
    lines.append(
        f"{len(report.refused)} refused, {len(report.accepted)} accepted, {len(report.warnings)} warnings"
        + (" — the gateway will not start until every refusal is fixed or accepted." if report.refused else "")
    )
    return "\n".join(lines)


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)


def catalogue_markdown(rules: Iterable[Rule]) -> str:
    """The rule table for docs/security.md, generated from code so docs and code cannot drift."""
    out = ["| id | severity | rule | recommended | why it matters | defined by |", "|---|---|---|---|---|---|"]
    for rule in sorted(rules, key=lambda r: r.id):
        sev = "— (behaviour)" if rule.severity is Severity.BEHAVIOUR else rule.severity.value
        out.append(f"| {rule.id} | {sev} | {rule.title} | {rule.recommended} | {rule.why} | {rule.plugin} |")
    return "\n".join(out)


# -- ports plan ---------------------------------------------------------------------------------------


def _exposure_dict(exp: Exposure) -> dict[str, Any]:
    if isinstance(exp, Listener):
        return {
            "kind": "listen", "plugin": exp.plugin, "protocol": exp.protocol, "address": exp.bind,
            "port": exp.port, "transport": exp.transport.value,
            "tls": f"TLS {exp.tls.min_version}+" + (f", client cert {exp.tls.client_auth}"
                                                   if exp.tls.client_auth != "none" else "")
            if exp.tls else "none",
            "auth": exp.auth.value, "allow_from": list(exp.allowlist), "writes": exp.writes,
            "description": exp.description,
        }
    if isinstance(exp, Outbound):
        return {
            "kind": "connect", "plugin": exp.plugin, "protocol": exp.protocol, "address": exp.host,
            "port": exp.port, "transport": exp.transport.value,
            "tls": f"TLS {exp.tls.min_version}+" if exp.tls else "none", "auth": exp.auth.value,
            "allow_from": [], "writes": exp.writes, "description": exp.description,
        }
    return {
        "kind": "multicast", "plugin": exp.plugin, "protocol": exp.protocol,
        "address": f"{exp.group} on {exp.interface or 'all interfaces'}", "port": exp.port,
        "transport": "udp", "tls": "n/a", "auth": "none", "allow_from": [], "writes": False,
        "description": exp.description,
    }


def ports_text(exposures: Sequence[Exposure]) -> str:
    if not exposures:
        return "Nothing is opened: no plugin is enabled that listens or connects."
    rows = []
    for e in map(_exposure_dict, exposures):
        rows.append([
            e["kind"], e["plugin"], e["protocol"], f"{e['address']}:{e['port'] or '-'}/{e['transport']}",
            e["tls"], e["auth"], ",".join(e["allow_from"]) or "any", "yes" if e["writes"] else "no",
        ])
    headers = ["kind", "plugin", "protocol", "address", "tls", "auth", "allow from", "writes"]
    return "\n".join(_table(headers, rows))


def ports_json(exposures: Sequence[Exposure]) -> str:
    return json.dumps([_exposure_dict(e) for e in exposures], indent=2)


def _family(addr: str) -> str:
    return "ip6" if ipaddress.ip_address(addr.split("/")[0]).version == 6 else "ip"


def ports_nftables(exposures: Sequence[Exposure], host: HostInfo | None = None) -> str:
    """An nftables ruleset admitting exactly the declared flows (plus loopback, replies and DNS)."""
    inbound, outbound = [], []
    for exp in exposures:
        if isinstance(exp, Listener):
            proto = exp.transport.value if exp.transport.value in {"tcp", "udp"} else None
            if proto is None:
                continue
            match = []
            if not is_wildcard(exp.bind):
                match.append(f"{_family(exp.bind)} daddr {exp.bind}")
            for net in exp.allowlist:
                fam = _family(net)
                allowed = ", ".join(n for n in exp.allowlist if _family(n) == fam)
                match.append(f"{fam} saddr {{ {allowed} }}")
                break
            inbound.append(f"        {' '.join([*match, f'{proto} dport {exp.port}'])} accept"
                           f"  # {exp.plugin}: {exp.protocol}")
        elif isinstance(exp, Outbound) and exp.port:
            dest = ""
            try:
                dest = f"{_family(exp.host)} daddr {exp.host} "
            except ValueError:
                dest = ""  # a host name: nftables matches addresses, so only the port can be pinned
            outbound.append(f"        {dest}{exp.transport.value} dport {exp.port} accept"
                            f"  # {exp.plugin}: {exp.protocol} to {exp.host}")
        elif isinstance(exp, Announcement):
            inbound.append(f"        udp dport {exp.port} accept  # {exp.plugin}: {exp.protocol} {exp.group}")
            outbound.append(f"        udp dport {exp.port} accept  # {exp.plugin}: {exp.protocol} {exp.group}")
    lines = [
        "# Generated by `ampgate ports --format nftables`. Review before loading: this table drops",
        "# every other flow in and out of this host (add your SSH rule if you manage it remotely).",
        "table inet ampgate {",
        "    chain input {",
        "        type filter hook input priority 0; policy drop;",
        "        iif lo accept",
        "        ct state established,related accept",
        "        meta l4proto { icmp, ipv6-icmp } accept",
        *inbound,
        "    }",
        "    chain output {",
        "        type filter hook output priority 0; policy drop;",
        "        oif lo accept",
        "        ct state established,related accept",
        "        meta l4proto { icmp, ipv6-icmp } accept",
        "        udp dport 53 accept  # DNS",
        "        tcp dport 53 accept  # DNS",
        *outbound,
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"
