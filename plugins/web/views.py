"""The console's pages as HTML, from plain data (pure: no I/O, no request).

Contract:
- Every value goes through ``html.h``/``esc``: nothing read from a device, an account or the database can
  become markup. No inline script, no ``style`` attribute and no event-handler attribute anywhere (the CSP
  forbids them); behaviour comes from ``/static/app.js`` reading ``data-*`` attributes.
- Every form that changes something carries the session's CSRF token (``csrf`` field, policy: WEB-003).
- Elements that show a live value carry ``data-entity`` (and ``data-field``); the script updates them from
  the ``/api/stream`` events.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.context import Role

from .const import CSRF_FIELD, SCOPES
from .html import Markup, attrs, esc, h, join

if TYPE_CHECKING:
    from gateway.states import State

    from .auth import Principal
    from .console import WebConsole
    from .fields import Field
    from .overview import ChargerView, PowerFlow


# -- formatting -------------------------------------------------------------------------------------------------


def fmt_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def fmt_value(value: Any, unit: str | None = None) -> str:
    """How a state reads (the same rules as ``formatValue`` in app.js)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "—"
        if unit in ("W", "Wh") and abs(value) >= 1000:
            return f"{value / 1000:.2f} k{unit}"
        return f"{fmt_number(float(value))} {unit}" if unit else fmt_number(float(value))
    text = str(value)
    return f"{text} {unit}" if unit else text


def fmt_power(watts: float | None) -> str:
    if watts is None:
        return "—"
    if abs(watts) >= 1000:
        return f"{watts / 1000:.2f} kW"
    return f"{watts:.0f} W"


def fmt_time(ts: float | None) -> Markup:
    if not ts:
        return Markup("—")
    moment = dt.datetime.fromtimestamp(ts).astimezone()
    return h('<time datetime="{iso}" data-relative>{text}</time>', iso=moment.isoformat(timespec="seconds"),
             text=moment.strftime("%Y-%m-%d %H:%M:%S"))


def fmt_date(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d")


def humanize(name: str) -> str:
    return name.replace("_", " ").capitalize()


def short(text: str | None, keep: int = 16) -> str:
    if not text:
        return "—"
    return text if len(text) <= keep else text[:keep] + "…"


# -- icons (inline SVG: markup, not script, so the CSP allows it) ---------------------------------------

_ICON_PATHS = {
    "overview": "M3 12l9-8 9 8M5 10v10h5v-6h4v6h5V10",
    "charger": "M7 3h7v18H7zM14 8h3l2 3v6a2 2 0 01-4 0v-3h-1M9.5 7l-1.5 4h3l-1.5 4",
    "shield": "M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z M9 12l2 2 4-4",
    "devices": "M4 5h16v10H4zM8 19h8M12 15v4",
    "audit": "M6 3h9l4 4v14H6zM14 3v5h5M9 12h7M9 16h7",
    "users": "M9 11a4 4 0 100-8 4 4 0 000 8zM2 21a7 7 0 0114 0M17 11a3 3 0 000-6M22 21a6 6 0 00-5-6",
    "badge": "M4 6h16v12H4zM8 10h4M8 14h8",
    "key": "M14 10a4 4 0 11-8 0 4 4 0 018 0zM13 12l8 8M18 17l2-2M16 15l2-2",
    "reset": "M4 4v6h6M20 20v-6h-6M5 15a8 8 0 0014 2M19 9A8 8 0 005 7",
    "grid": "M12 2l-4 7h8zM8 9l-3 13M16 9l3 13M6 15h12M7 19h10",
    "sun": "M12 7a5 5 0 100 10 5 5 0 000-10zM12 1v3M12 20v3M4.2 4.2l2.1 2.1M17.7 17.7l2.1 2.1M1 12h3M20 12h3"
           "M4.2 19.8l2.1-2.1M17.7 6.3l2.1-2.1",
    "home": "M3 11l9-7 9 7v10H3zM9 21v-6h6v6",
    "bolt": "M13 2L4 14h7l-1 8 9-12h-7z",
    "theme": "M21 12.8A9 9 0 1111.2 3a7 7 0 009.8 9.8z",
    "logout": "M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10",
    "lock": "M6 11h12v10H6zM8 11V7a4 4 0 018 0v4",
}


def icon(name: str, cls: str = "icon") -> Markup:
    return h('<svg class="{cls}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">'
             '<path d="{d}"/></svg>', cls=cls, d=_ICON_PATHS.get(name, ""))


# -- the frame ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NavItem:
    key: str
    href: str
    label: str
    icon: str
    role: Role


NAV: tuple[NavItem, ...] = (
    NavItem(key="overview", href="/", label="Overview", icon="overview", role=Role.VIEWER),
    NavItem(key="chargers", href="/chargers", label="Chargers", icon="charger", role=Role.VIEWER),
    NavItem(key="security", href="/security", label="Security", icon="shield", role=Role.VIEWER),
    NavItem(key="enrollment", href="/enrollment", label="Devices", icon="devices", role=Role.VIEWER),
    NavItem(key="idtokens", href="/idtokens", label="Badges", icon="badge", role=Role.OPERATOR),
    NavItem(key="audit", href="/audit", label="Audit log", icon="audit", role=Role.ADMIN),
    NavItem(key="users", href="/users", label="Users", icon="users", role=Role.ADMIN),
    NavItem(key="tokens", href="/tokens", label="API tokens", icon="key", role=Role.ADMIN),
    NavItem(key="reset", href="/reset", label="Factory reset", icon="reset", role=Role.ADMIN),
)


@dataclass(slots=True, kw_only=True)
class Frame:
    """What every page needs besides its content."""

    site: str
    principal: Principal | None
    tls: bool = True
    flashes: Sequence[tuple[str, str]] = field(default_factory=tuple)

    @property
    def csrf(self) -> str:
        return (self.principal.csrf if self.principal else None) or ""

    def can(self, role: Role) -> bool:
        return self.principal is not None and self.principal.role >= role


def frame_for(console: WebConsole, principal: Principal | None) -> Frame:
    flashes: list[tuple[str, str]] = []
    if principal is not None and principal.session is not None:
        flashes, principal.session.flash = list(principal.session.flash), []
    return Frame(site=console.gw.name, principal=principal, tls=console.tls, flashes=flashes)


def csrf_input(frame: Frame) -> Markup:
    return h('<input type="hidden" name="{name}" value="{value}">', name=CSRF_FIELD, value=frame.csrf)


def _nav(frame: Frame, active: str) -> Markup:
    if frame.principal is None or (frame.principal.session is not None and frame.principal.session.must_change):
        return Markup("")
    items = []
    for item in NAV:
        if not frame.can(item.role):
            continue
        current = Markup(' aria-current="page"') if item.key == active else Markup("")
        items.append(h('<a href="{href}"{current}>{icon}<span>{label}</span></a>', href=item.href, current=current,
                       icon=icon(item.icon), label=item.label))
    return h('<div class="tabs-row"><nav class="nav" aria-label="Main">{items}</nav></div>', items=join(items))


def _user_menu(frame: Frame) -> Markup:
    principal = frame.principal
    theme = h('<button type="button" class="icon-button" data-theme-toggle title="Light or dark">{i}'
              '<span class="sr-only">Toggle light or dark</span></button>', i=icon("theme"))
    if principal is None:
        return h('<div class="user">{theme}</div>', theme=theme)
    return h(
        '<div class="user">{theme}'
        '<details class="menu"><summary><span class="avatar">{initial}</span>'
        '<span class="who">{name}</span><span class="role role-{role}">{role}</span></summary>'
        '<div class="menu-body">'
        '<a href="/password">{lock} Change password</a>'
        '<form method="post" action="/logout">{csrf}<button type="submit" class="link">{out} Log out</button></form>'
        '</div></details></div>',
        theme=theme, initial=principal.username[:1].upper(), name=principal.username,
        role=principal.role.name.lower(), lock=icon("lock"), csrf=csrf_input(frame), out=icon("logout"))


def _flashes(frame: Frame) -> Markup:
    return join(h('<div class="flash flash-{kind}" role="status">{text}</div>', kind=kind, text=text)
                for kind, text in frame.flashes)


def layout(frame: Frame, *, title: str, active: str, body: Markup, page: str | None = None,
           wide: bool = False) -> str:
    brand = h('<a class="brand" href="/">{bolt}<span class="brand-name">Ampgate</span>'
              '<span class="site">{site}</span></a>', bolt=icon("bolt", "logo"), site=frame.site)
    live = Markup('<span class="live" data-live title="Live updates"><span class="dot"></span>'
                  '<span class="live-text">connecting…</span></span>') if frame.principal else Markup("")
    doc = h(
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">\n'
        '<meta name="color-scheme" content="light dark">\n<meta name="referrer" content="no-referrer">\n'
        '<meta name="csrf-token" content="{csrf}">\n<title>{title} · Ampgate</title>\n'
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">\n'
        '<link rel="stylesheet" href="/static/app.css">\n<script src="/static/theme.js"></script>\n'
        '<script src="/static/app.js" defer></script>\n</head>\n'
        '<body data-page="{page}">\n<header class="topbar"><div class="topbar-inner">{brand}{user}</div>{nav}'
        '</header>\n<main class="container{wide}">\n<div class="page-head"><h1>{title}</h1>{live}</div>\n'
        '{flashes}{body}\n</main>\n<footer class="footer">Ampgate {version} · {scheme}</footer>\n</body>\n</html>\n',
        csrf=frame.csrf, title=title, page=page or active, brand=brand, nav=_nav(frame, active),
        user=_user_menu(frame), wide=" wide" if wide else "", live=live, flashes=_flashes(frame), body=body,
        version=__version__, scheme="HTTPS" if frame.tls else "HTTP on loopback")
    return str(doc)


def card(title: str | Markup, body: Markup, *, cls: str = "", actions: Markup | None = None) -> Markup:
    head = h('<div class="card-head"><h2>{title}</h2>{actions}</div>', title=title, actions=actions or "")
    return h('<section class="card {cls}">{head}{body}</section>', cls=cls, head=head, body=body)


def empty(text: str | Markup) -> Markup:
    return h('<p class="empty">{text}</p>', text=text)


def badge(text: str, kind: str = "neutral") -> Markup:
    return h('<span class="badge badge-{kind}">{text}</span>', kind=kind, text=text)


STATUS_KIND = {
    "available": "ok", "charging": "active", "preparing": "info", "suspendedev": "info", "suspendedevse": "warn",
    "finishing": "info", "reserved": "info", "faulted": "bad", "unavailable": "muted", "approved": "ok",
    "pending": "warn", "rejected": "bad", "accepted": "ok", "blocked": "bad", "expired": "muted",
    "invalid": "muted", "refused": "bad", "warning": "warn", "ok": "ok",
}


def status_badge(value: Any) -> Markup:
    text = fmt_value(value)
    kind = STATUS_KIND.get(str(value).lower().replace("_", ""), "neutral")
    return badge(text, kind)


# -- login and password ----------------------------------------------------------------------------------------


def login_page(frame: Frame, *, csrf: str, next_url: str, message: str = "", kind: str = "error",
               username: str = "") -> str:
    note = h('<div class="flash flash-{kind}" role="alert">{m}</div>', kind=kind, m=message) if message else ""
    body = h(
        '<div class="auth-card card"><div class="auth-brand">{logo}<div><strong>Ampgate</strong>'
        '<span>{site}</span></div></div>{note}'
        '<form method="post" action="/login" class="stack" autocomplete="on">'
        '<input type="hidden" name="{field}" value="{csrf}"><input type="hidden" name="next" value="{next}">'
        '<label>User name<input name="username" autocomplete="username" autocapitalize="none" spellcheck="false" '
        'required maxlength="64" value="{username}" autofocus></label>'
        '<label>Password<input name="password" type="password" autocomplete="current-password" required '
        'maxlength="256"></label>'
        '<button type="submit" class="primary wide">Log in</button></form>'
        '<p class="hint">First start? The one-time password of <code>admin</code> was printed once on the '
        'gateway\'s console (where <code>ampgate run</code> was started). Lost it? Run '
        '<code>ampgate user passwd admin --generate</code> on the gateway.</p></div>',
        logo=icon("bolt", "logo big"), site=frame.site, note=note, field=CSRF_FIELD, csrf=csrf, next=next_url,
        username=username)
    return layout(frame, title="Log in", active="login", body=Markup(h('<div class="auth-wrap">{b}</div>', b=body)))


PASSWORD_RULES = (
    "8 to 64 characters",
    "a lower-case and an upper-case letter, a digit and a special character",
    "not a known default or common password, and not your user name",
    "different from the current password",
)


def password_page(frame: Frame, *, forced: bool, problems: Sequence[str] = ()) -> str:
    intro = (h('<div class="flash flash-warn" role="alert"><strong>Choose your own password.</strong> The password '
               'you logged in with was a one-time password; nothing else is available until it is changed.</div>')
             if forced else "")
    errors = (h('<div class="flash flash-error" role="alert">The password was not changed:<ul>{items}</ul></div>',
                items=join(h("<li>{p}</li>", p=p) for p in problems)) if problems else "")
    rules = join(h("<li>{r}</li>", r=r) for r in PASSWORD_RULES)
    form = h(
        '<form method="post" action="/password" class="stack narrow">{csrf}'
        '<input type="text" name="username" autocomplete="username" value="{user}" hidden>'
        '<label>Current password<input name="current" type="password" autocomplete="current-password" required '
        'maxlength="256"></label>'
        '<label>New password<input name="new" type="password" autocomplete="new-password" required minlength="8" '
        'maxlength="64" data-strength></label>'
        '<div class="meter" data-strength-meter hidden><span></span></div>'
        '<label>New password again<input name="confirm" type="password" autocomplete="new-password" required '
        'minlength="8" maxlength="64"></label>'
        '<button type="submit" class="primary">Change password</button></form>'
        '<div class="rules"><h3>The new password needs</h3><ul>{rules}</ul>'
        '<p class="hint">Changing it logs out your other sessions.</p></div>',
        csrf=csrf_input(frame), user=frame.principal.username if frame.principal else "", rules=rules)
    body = h('{intro}{errors}{card}', intro=intro, errors=errors,
             card=card("Change password", h('<div class="split">{f}</div>', f=form)))
    return layout(frame, title="Password", active="password", body=body)


# -- overview -------------------------------------------------------------------------------------------------


def _flow_tile(key: str, label: str, icon_name: str, watts: float | None, note: str) -> Markup:
    return h('<div class="flow-tile flow-{key}"><div class="flow-icon">{icon}</div>'
             '<div class="flow-label">{label}</div><div class="flow-value" data-flow="{key}">{value}</div>'
             '<div class="flow-note" data-flow-note="{key}">{note}</div></div>',
             key=key, icon=icon(icon_name), label=label, value=fmt_power(watts), note=note)


def _grid_note(watts: float | None) -> str:
    if watts is None:
        return "no meter"
    return "importing" if watts > 0 else ("exporting" if watts < 0 else "balanced")


def flow_card(flow: PowerFlow) -> Markup:
    tiles = join([
        _flow_tile("grid", "Grid", "grid", flow.grid_w, _grid_note(flow.grid_w)),
        _flow_tile("pv", "Solar", "sun", flow.pv_w, f"{len(flow.pv_entities)} inverter(s)" if flow.pv_entities
                   else "no inverter"),
        _flow_tile("chargers", "Chargers", "charger", flow.chargers_w,
                   f"{len(flow.charger_entities)} charger(s)" if flow.charger_entities else "no charger"),
        _flow_tile("home", "House", "home", flow.home_w, "grid + solar - chargers"),
    ])
    data = attrs(data_flow_grid=flow.grid_entity, data_flow_pv=",".join(flow.pv_entities),
                 data_flow_chargers=",".join(flow.charger_entities))
    return card("Power flow", h('<div class="flow"{data}>{tiles}</div>', data=data, tiles=tiles), cls="flow-card")


def _state_row(state: State) -> Markup:
    return h('<tr data-row="{id}"><td class="entity"><code>{id}</code></td>'
             '<td class="value" data-entity="{id}" data-field="value" data-unit="{unit}">{value}</td>'
             '<td class="changed" data-entity="{id}" data-field="changed">{changed}</td></tr>',
             id=state.entity_id, unit=state.unit or "", value=fmt_value(state.value, state.unit),
             changed=fmt_time(state.last_changed))


def states_table(states: Sequence[State]) -> Markup:
    rows = join(_state_row(s) for s in states)
    search = Markup('<input type="search" class="filter" placeholder="Filter entities" data-filter="states" '
                    'aria-label="Filter entities">')
    table = h('<div class="table-wrap"><table class="table states" data-states><thead><tr><th>Entity</th>'
              '<th>Value</th><th>Changed</th></tr></thead><tbody>{rows}</tbody></table></div>{none}',
              rows=rows, none=empty("No entities yet: enable a plugin that measures or controls something.")
              if not states else "")
    return card(h("Live states <span class=\"count\" data-count>{n}</span>", n=len(states)), table, actions=search)


def overview_page(frame: Frame, *, flow: PowerFlow, chargers: Sequence[ChargerView], states: Sequence[State],
                  pending: int, posture: Mapping[str, Any]) -> str:
    stats = join([
        h('<a class="stat" href="/chargers"><span class="stat-value">{n}</span><span>chargers</span></a>',
          n=len(chargers)),
        h('<a class="stat{warn}" href="/enrollment"><span class="stat-value">{n}</span>'
          '<span>devices waiting</span></a>',
          n=pending, warn=" stat-warn" if pending else ""),
        h('<a class="stat{warn}" href="/security"><span class="stat-value">{n}</span><span>warnings</span></a>',
          n=posture.get("warnings", 0), warn=" stat-warn" if posture.get("warnings") else ""),
        h('<a class="stat" href="/security"><span class="stat-value">{n}</span><span>accepted risks</span></a>',
          n=len(posture.get("accepted", []))),
    ])
    charger_list = join(
        h('<li><a href="/chargers#{id}"><span class="name">{id}</span>'
          '<span data-entity="{entity}" data-field="badge">{status}</span>'
          '<span class="power" data-entity="{power}" data-field="value" data-unit="W">{watts}</span></a></li>',
          id=c.id, entity=c.entity_id, status=status_badge(c.status), power=c.power_entity,
          watts=fmt_power(c.power_w))
        for c in chargers)
    chargers_card = card("Chargers", h('<ul class="charger-list">{items}</ul>', items=charger_list) if chargers
                         else empty("No charger yet. Chargers appear as charger.<id> when a charger plugin "
                                    "(OCPP, ...) sees them."))
    body = h('<div class="stats">{stats}</div><div class="grid-2">{flow}{chargers}</div>{table}', stats=stats,
             flow=flow_card(flow), chargers=chargers_card, table=states_table(states))
    return layout(frame, title="Overview", active="overview", body=body)


# -- chargers ---------------------------------------------------------------------------------------------------

CHARGER_ATTRS = ("vendor", "model", "firmware", "phases", "min_current_a", "max_current_a", "limit_a", "connected",
                 "session_energy_wh")
LABELS = {"min_current_a": "Min current", "max_current_a": "Max current", "limit_a": "Limit",
          "session_energy_wh": "Session energy", "limit_w": "Limit", "id_token": "Badge (id token)"}


def label(name: str) -> str:
    return LABELS.get(name) or humanize(name)
SERVICE_STYLE = {"start": "primary", "stop": "danger", "set_current_limit": "primary"}
# Everyday commands first, the disruptive ones last; services not named here follow in name order.
SERVICE_ORDER = ("start", "stop", "set_current_limit", "unlock", "reset")


def _field_input(f: Field) -> Markup:
    unit = {"_a": " (A)", "_w": " (W)", "_wh": " (Wh)", "_s": " (s)"}.get("_" + f.name.rsplit("_", 1)[-1], "")
    text = label(f.name) + unit + ("" if f.required else " (optional)")
    if f.choices:
        options = join(h('<option value="{v}"{sel}>{v}</option>', v=c,
                         sel=Markup(" selected") if c == f.default else "") for c in f.choices)
        return h('<label>{label}<select name="{name}">{options}</select></label>', label=text, name=f.name,
                 options=options)
    if f.type == "boolean":
        return h('<label class="check"><input type="checkbox" name="{name}"{checked}> {label}</label>',
                 name=f.name, label=label(f.name), checked=Markup(" checked") if f.default else "")
    kind = "number" if f.type in ("number", "integer") else "text"
    step = Markup(' step="any"') if f.type == "number" else (Markup(' step="1"') if f.type == "integer" else "")
    default = "" if f.default is None else f.default
    return h('<label>{label}<input type="{kind}" name="{name}" value="{default}"{step}{req} '
             'inputmode="{mode}" autocomplete="off"></label>', label=text, kind=kind, name=f.name, default=default,
             step=step, req=Markup(" required") if f.required else "",
             mode="decimal" if kind == "number" else "text")


def _service_form(frame: Frame, charger_id: str, service: str, fields: Sequence[Field]) -> Markup:
    inputs = join(_field_input(f) for f in fields if f.name != "charger")
    style = SERVICE_STYLE.get(service, "secondary")
    return h('<form method="post" action="/chargers/{id}/{service}" class="action">{csrf}{inputs}'
             '<button type="submit" class="{style}">{label}</button></form>',
             id=charger_id, service=service, csrf=csrf_input(frame), inputs=inputs, style=style,
             label=humanize(service))


def charger_card(frame: Frame, view: ChargerView, services: Sequence[tuple[str, Sequence[Field]]]) -> Markup:
    attributes = join(
        h('<div><dt>{k}</dt><dd>{v}</dd></div>', k=label(k),
          v=fmt_value(view.attributes[k], "Wh" if k.endswith("_wh") else ("A" if k.endswith("_a") else None)))
        for k in CHARGER_ATTRS if k in view.attributes)
    extra = join(h('<div><dt>{k}</dt><dd>{v}</dd></div>', k=label(k), v=fmt_value(v))
                 for k, v in view.attributes.items() if k not in CHARGER_ATTRS)
    sensors = join(
        h('<div><dt>{name}</dt><dd data-entity="{id}" data-field="value" data-unit="{unit}">{value}</dd></div>',
          name=humanize(s.entity_id.split(".", 1)[1].removeprefix(view.id + "_")), id=s.entity_id,
          unit=s.unit or "", value=fmt_value(s.value, s.unit)) for s in view.sensors)
    if frame.can(Role.OPERATOR):
        ordered = sorted(services, key=lambda s: (SERVICE_ORDER.index(s[0]) if s[0] in SERVICE_ORDER
                                                  else len(SERVICE_ORDER), s[0]))
        bare = [s for s in ordered if not [f for f in s[1] if f.name != "charger"]]
        rest = [s for s in ordered if s not in bare]
        buttons = join(_service_form(frame, view.id, name, fields) for name, fields in bare)
        forms = join(_service_form(frame, view.id, name, fields) for name, fields in rest)
        actions = (h('<div class="actions"><div class="button-row">{b}</div>{f}</div>', b=buttons, f=forms)
                   if services else empty("No charger plugin offers commands for this charger."))
    else:
        actions = Markup('<p class="hint">Read only: commands need the operator role.</p>')
    body = h('<div class="charger-top"><div class="charger-power" data-entity="{power}" data-field="value" '
             'data-unit="W">{watts}</div><div data-entity="{entity}" data-field="badge">{status}</div></div>'
             '<dl class="kv">{attributes}{extra}</dl>{sensors}{actions}',
             power=view.power_entity, watts=fmt_power(view.power_w), entity=view.entity_id,
             status=status_badge(view.status), attributes=attributes, extra=extra,
             sensors=h('<h3>Measurements</h3><dl class="kv">{s}</dl>', s=sensors) if view.sensors else "",
             actions=actions)
    return h('<div id="{id}">{card}</div>', id=view.id, card=card(h("<code>{e}</code>", e=view.entity_id), body))


def site_limit_card(frame: Frame, current: Any) -> Markup:
    """The operator's control over what the whole site may draw (``loadmanager.set_site_limit``)."""
    attrs = dict(getattr(current, "attributes", {}) or {})
    now = h('<dl class="kv"><div><dt>Active limit</dt><dd data-entity="{id}" data-field="value" data-unit="W">{v}'
            '</dd></div><div><dt>Source</dt><dd>{src}</dd></div></dl>', id=SITE_LIMIT_ENTITY,
            v=fmt_value(getattr(current, "value", None), "W"), src=attrs.get("source") or "-")
    if not frame.can(Role.OPERATOR):
        read_only = Markup('<p class="hint">Read only: commands need the operator role.</p>')
        return card("Site limit", join([now, read_only]))
    form = h('<form method="post" action="/site/limit" class="action">{csrf}'
             '<label>Limit per phase (A) <input type="number" name="limit_a" min="0" max="1000" step="0.5" required>'
             '</label><label>For (optional, e.g. 15m) <input type="text" name="duration" placeholder="until changed">'
             '</label><button type="submit" class="primary">Set site limit</button></form>'
             '<form method="post" action="/site/limit" class="action">{csrf}'
             '<input type="hidden" name="release" value="1">'
             '<button type="submit" class="secondary">Release the limit</button></form>',
             csrf=csrf_input(frame))
    return card("Site limit", join([now, form]))


SITE_LIMIT_ENTITY = "sensor.loadmanager_site_limit"


def chargers_page(frame: Frame, *, chargers: Sequence[ChargerView], services: Sequence[tuple[str, Sequence[Field]]],
                  sessions: Sequence[Mapping[str, Any]], site_limit: Any = None, has_site_limit: bool = False) -> str:
    cards = join(charger_card(frame, c, services) for c in chargers)
    if has_site_limit:
        cards = join([site_limit_card(frame, site_limit), cards])
    if not chargers:
        cards = card("No charger yet", empty(
            "Chargers appear here as charger.<id> entities as soon as a charger plugin (OCPP, ...) sees them. "
            "New stations wait for approval under Devices."))
    rows = join(h('<tr><td>{time}</td><td><code>{charger}</code></td><td>{event}</td><td>{tx}</td><td>{energy}</td>'
                  '<td>{reason}</td></tr>', time=fmt_time(s.get("time")), charger=s.get("charger", "?"),
                  event=s.get("event", ""), tx=s.get("transaction", ""),
                  energy=fmt_value(s.get("energy_wh"), "Wh"), reason=s.get("stop_reason") or "")
                for s in reversed(sessions))
    history = card("Charging sessions since the gateway started", h(
        '<div class="table-wrap"><table class="table"><thead><tr><th>Time</th><th>Charger</th><th>Event</th>'
        '<th>Session</th><th>Energy</th><th>Stop reason</th></tr></thead><tbody>{rows}</tbody></table></div>',
        rows=rows) if sessions else empty("No session started or ended since the gateway started."))
    body = h('<div class="cards">{cards}</div>{history}', cards=cards, history=history)
    return layout(frame, title="Chargers", active="chargers", body=body)


# -- security posture ------------------------------------------------------------------------------------------


def _finding(row: Mapping[str, Any]) -> Markup:
    accepted = ""
    if row.get("accepted_reason"):
        until = f" until {row['accepted_until']}" if row.get("accepted_until") else " (no expiry)"
        accepted = h('<div><dt>Accepted</dt><dd>{r}{u}</dd></div>', r=row["accepted_reason"], u=until)
    note = h('<div><dt>Note</dt><dd>{n}</dd></div>', n=row["note"]) if row.get("note") else ""
    return h(
        '<article class="finding finding-{status}"><header>{badge}<strong>{rule}</strong> {title}'
        '<span class="plugin">{plugin}</span></header><dl class="kv wide">'
        '<div><dt>Setting</dt><dd><code>{where}</code></dd></div>'
        '<div><dt>Recommended</dt><dd>{recommended}</dd></div><div><dt>Actual</dt><dd>{actual}</dd></div>'
        '<div><dt>Problem</dt><dd>{message}</dd></div><div><dt>Why it matters</dt><dd>{why}</dd></div>'
        '<div><dt>Fix</dt><dd>{fix}</dd></div>{accepted}{note}</dl></article>',
        status=row["status"], badge=status_badge(row["status"]), rule=row["rule"], title=row["title"],
        plugin=row["plugin"], where=row["where"], recommended=row["recommended"], actual=row["actual"],
        message=row["message"], why=row["why"], fix=row["fix"], accepted=accepted, note=note)


def _expiry(until: str | None, today: dt.date) -> Markup:
    if not until:
        return badge("no expiry", "warn")
    try:
        days = (dt.date.fromisoformat(until) - today).days
    except ValueError:
        return esc(until)
    kind = "bad" if days < 0 else ("warn" if days <= 30 else "ok")
    text = f"{until} (expired)" if days < 0 else f"{until} (in {days} days)"
    return badge(text, kind)


def security_page(frame: Frame, *, posture: Mapping[str, Any], fingerprint: str | None, today: dt.date) -> str:
    if not posture.get("available"):
        body = card("Security posture", empty("This gateway was started without a checked plan; run ampgate check."))
        return layout(frame, title="Security", active="security", body=body)
    findings = posture["findings"]
    refused, warnings, accepted = posture["refused"], posture["warnings"], posture["accepted"]
    kind = "bad" if refused else ("warn" if warnings or accepted else "ok")
    summary = h('<div class="posture posture-{kind}">{icon}<div><strong>{headline}</strong><span>{counts}</span>'
                '</div></div>', kind=kind, icon=icon("shield"),
                headline="Refused settings present" if refused else (
                    "Running with warnings or accepted risks" if warnings or accepted else
                    "Nothing insecure is configured"),
                counts=f"{refused} refused · {warnings} warnings · {len(accepted)} accepted risks · "
                       f"same findings as `ampgate check`")
    finding_list = join(_finding(r) for r in findings) if findings else empty("No findings.")
    risk_rows = join(h('<tr><td><strong>{rule}</strong><br><span class="muted">{title}</span></td><td>{plugin}</td>'
                       '<td>{reason}</td><td>{until}</td></tr>', rule=r["rule"], title=r["title"], plugin=r["plugin"],
                       reason=r.get("accepted_reason") or "", until=_expiry(r.get("accepted_until"), today))
                     for r in accepted)
    risks = card("Accepted risks", h(
        '<div class="table-wrap"><table class="table"><thead><tr><th>Rule</th><th>Plugin</th><th>Reason</th>'
        '<th>Expires</th></tr></thead><tbody>{rows}</tbody></table></div>', rows=risk_rows) if accepted
        else empty("No risk is accepted."))
    unused = posture.get("unused_acceptances") or []
    if unused:
        risks = join([risks, card("Acceptances that match nothing", join(
            h('<p class="muted"><code>{rule}</code> {plugin}: {reason} — remove it from gateway.accept_risk</p>',
              rule=a["rule"], plugin=a.get("plugin") or "", reason=a["reason"]) for a in unused))])
    port_rows = join(h('<tr><td>{kind}</td><td>{plugin}</td><td>{protocol}</td><td><code>{address}:{port}/{transport}'
                       '</code></td><td>{tls}</td><td>{auth}</td><td>{allow}</td><td>{writes}</td></tr>',
                       kind=p["kind"], plugin=p["plugin"], protocol=p["protocol"], address=p["address"],
                       port=p["port"] or "-", transport=p["transport"], tls=p["tls"], auth=p["auth"],
                       allow=", ".join(p["allow_from"]) or "any", writes="yes" if p["writes"] else "no")
                     for p in posture["ports"])
    ports = card("Ports plan", h(
        '<p class="hint">Every listener, connection and announcement this configuration opens (as '
        '<code>ampgate ports</code>).</p><div class="table-wrap"><table class="table"><thead><tr><th>Kind</th>'
        '<th>Plugin</th><th>Protocol</th><th>Address</th><th>TLS</th><th>Auth</th><th>Allow from</th>'
        '<th>Writes</th></tr></thead><tbody>{rows}</tbody></table></div>', rows=port_rows))
    failed = posture.get("failed_plugins") or {}
    plugins = h('<p>Running plugins: {names}</p>{failed}{fp}',
                names=join((h("<code>{p}</code>", p=p) for p in posture.get("plugins", [])), ", ") or "none",
                failed=join(h('<div class="flash flash-error">Plugin <code>{n}</code> failed: {e}</div>', n=n, e=e)
                            for n, e in failed.items()),
                fp=h('<p>This console\'s certificate (SHA-256): <code class="fingerprint">{f}</code></p>',
                     f=fingerprint) if fingerprint else "")
    body = h('{summary}{findings}<div class="grid-2">{risks}{plugins}</div>{ports}', summary=summary,
             findings=card("Findings", finding_list), risks=risks, plugins=card("Gateway", plugins), ports=ports)
    return layout(frame, title="Security", active="security", body=body, wide=True)


# -- enrollment ---------------------------------------------------------------------------------------------------


def _info(info: Mapping[str, Any]) -> Markup:
    return join((h('<span class="tag">{k}: {v}</span>', k=k, v=short(str(v), 40)) for k, v in list(info.items())[:8]),
                " ")


def enrollment_page(frame: Frame, *, entries: Sequence[Mapping[str, Any]]) -> str:
    admin = frame.can(Role.ADMIN)
    sections = []
    for status, title in (("pending", "Waiting for a decision"), ("approved", "Approved"), ("rejected", "Rejected")):
        rows = []
        for e in (e for e in entries if e["status"] == status):
            warn = badge("fingerprint changed", "bad") if e.get("fingerprint_changed") else ""
            buttons: Markup | str = ""
            if admin:
                decide = []
                if status != "approved" or e.get("fingerprint_changed"):
                    decide.append(("approve", "Approve", "primary"))
                if status != "rejected":
                    decide.append(("reject", "Reject", "danger"))
                buttons = join(h('<form method="post" action="/enrollment/decide" class="inline">{csrf}'
                                 '<input type="hidden" name="kind" value="{kind}">'
                                 '<input type="hidden" name="identity" value="{identity}">'
                                 '<button type="submit" name="decision" value="{d}" class="{style} small">{label}'
                                 '</button></form>', csrf=csrf_input(frame), kind=e["kind"], identity=e["identity"],
                                 d=d, style=style, label=label) for d, label, style in decide)
            rows.append(h(
                '<tr data-enrollment="{kind}/{identity}"><td>{kindb}</td><td><strong class="identity">{identity}'
                '</strong> {warn}<div class="muted">{info}</div></td><td><code>{address}</code></td>'
                '<td><code title="{fp}">{fps}</code></td><td>{seen}</td><td class="buttons">{buttons}</td></tr>',
                kind=e["kind"], identity=e["identity"], kindb=badge(e["kind"], "info"), warn=warn,
                info=_info(e.get("info") or {}), address=e.get("address") or "—", fp=e.get("fingerprint") or "",
                fps=short(e.get("offered_fingerprint") or e.get("fingerprint"), 20), seen=fmt_time(e.get("last_seen")),
                buttons=buttons))
        table = h('<div class="table-wrap"><table class="table"><thead><tr><th>Kind</th><th>Identity</th>'
                  '<th>Address</th><th>Fingerprint</th><th>Last seen</th><th></th></tr></thead><tbody>{rows}'
                  '</tbody></table></div>', rows=join(rows)) if rows else empty("None.")
        sections.append(card(h('{t} <span class="count">{n}</span>', t=title, n=len(rows)), table,
                             cls="pending" if status == "pending" else ""))
    intro = h('<p class="hint">Nothing that announces itself is trusted (DISC-001): stations, energy managers and '
              'discovered devices wait here until an administrator approves them.{ro}</p>'
              '<div class="flash flash-info" data-enrollment-changed hidden>The queue changed. '
              '<a href="/enrollment">Reload</a></div>',
              ro="" if admin else " Only administrators can decide.")
    return layout(frame, title="Devices", active="enrollment", body=h("{i}{s}", i=intro, s=join(sections)))


# -- audit ---------------------------------------------------------------------------------------------------

AUDIT_FILTERS = ("", "auth.", "user.", "web.", "enrollment.", "idtoken.", "policy.", "security.", "gateway.")


def _audit_data(data: Mapping[str, Any]) -> Markup:
    return join((h('<span class="tag">{k}={v}</span>', k=k, v=short(str(v), 60)) for k, v in data.items()), " ")


def audit_page(frame: Frame, *, records: Sequence[Mapping[str, Any]], verify: Mapping[str, Any] | None,
               event: str, limit: int) -> str:
    result: Markup | str = ""
    if verify is not None:
        if verify["ok"]:
            result = h('<div class="flash flash-ok" role="status">Chain intact: all {n} records verify.</div>',
                       n=verify["records"])
        else:
            result = h('<div class="flash flash-error" role="alert"><strong>Tampering detected</strong> at record '
                       '{seq}: {problem}</div>', seq=verify.get("first_bad_seq"), problem=verify.get("problem"))
    options = join(h('<option value="{v}"{s}>{label}</option>', v=v, s=Markup(" selected") if v == event else "",
                     label=v or "all events") for v in AUDIT_FILTERS)
    limits = join(h('<option{s}>{n}</option>', n=n, s=Markup(" selected") if n == limit else "")
                  for n in (100, 500, 1000))
    controls = h('<form method="get" action="/audit" class="toolbar"><select name="event" aria-label="Event">{o}'
                 '</select><select name="limit" aria-label="How many">{l}</select><button type="submit" '
                 'class="secondary">Show</button><button type="submit" name="verify" value="1" class="primary">'
                 'Verify chain</button></form>', o=options, l=limits)
    rows = join(h('<tr><td class="num">{seq}</td><td>{ts}</td><td><code>{event}</code></td><td>{actor}</td>'
                  '<td class="data">{data}</td><td><code class="hash" title="{hash}">{short}</code></td></tr>',
                  seq=r["seq"], ts=fmt_time(r["ts"]), event=r["event"], actor=r["actor"], data=_audit_data(r["data"]),
                  hash=r["hash"], short=r["hash"][:10]) for r in reversed(records))
    table = h('<div class="table-wrap"><table class="table audit"><thead><tr><th>#</th><th>Time</th><th>Event</th>'
              '<th>Who</th><th>Data</th><th>Hash</th></tr></thead><tbody>{rows}</tbody></table></div>', rows=rows)
    body = h('{result}{card}', result=result, card=card("Audit log", h(
        '<p class="hint">Append-only and hash-chained (LOG-002); newest first. <code>ampgate audit verify</code> '
        'checks the same chain.</p>{c}{t}', c=controls, t=table if records else empty("No records."))))
    return layout(frame, title="Audit log", active="audit", body=body, wide=True)


# -- users, API tokens, badges ---------------------------------------------------------------------------------


def secret_once(title: str, label: str, value: str, note: str) -> Markup:
    return h('<div class="secret-once" role="alert"><strong>{title}</strong><p>{note}</p><div class="copy-row">'
             '<code data-copy-source>{value}</code><button type="button" class="secondary small" data-copy>Copy'
             '</button></div><p class="muted">{label}</p></div>', title=title, note=note, value=value, label=label)


def users_page(frame: Frame, *, users: Sequence[Mapping[str, Any]], shown: Markup | None = None) -> str:
    me = frame.principal.username.lower() if frame.principal else ""
    rows = []
    for u in users:
        state = []
        if u["locked"]:
            state.append(badge("locked", "bad"))
        if u["must_change"]:
            state.append(badge("must change password", "warn"))
        actions = h('<form method="post" action="/users/{name}/password" class="inline">{csrf}<button type="submit" '
                    'class="secondary small" data-confirm="Give {name} a new one-time password? Their sessions end.">'
                    'New password</button></form>', name=u["username"], csrf=csrf_input(frame))
        if u["username"].lower() != me:
            actions = join([actions, h(
                '<form method="post" action="/users/{name}/delete" class="inline">{csrf}<button type="submit" '
                'class="danger small" data-confirm="Delete {name}? Their sessions and API tokens end.">Delete'
                '</button></form>', name=u["username"], csrf=csrf_input(frame))])
        rows.append(h('<tr><td><strong>{name}</strong>{you}</td><td>{role}</td><td>{state}</td><td>{failed}</td>'
                      '<td>{created}</td><td class="buttons">{actions}</td></tr>', name=u["username"],
                      you=Markup(' <span class="muted">(you)</span>') if u["username"].lower() == me else "",
                      role=badge(u["role"], "info"), state=join(state, " ") or "—", failed=u["failed_count"],
                      created=fmt_time(u["created"]), actions=actions))
    roles = join(h('<option value="{r}"{s}>{r}</option>', r=r, s=Markup(" selected") if r == "viewer" else "")
                 for r in ("viewer", "operator", "admin"))
    add = h('<form method="post" action="/users" class="toolbar">{csrf}<input name="username" placeholder="user name" '
            'required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9._@\\-]{{0,63}}" autocapitalize="none" '
            'aria-label="User name"><select name="role" aria-label="Role">{roles}</select>'
            '<button type="submit" class="primary">Add user</button></form>'
            '<p class="hint">A new account gets a one-time password, shown once here; it must be changed at the '
            'first login. Roles: viewer reads, operator also sends commands, admin does everything.</p>',
            csrf=csrf_input(frame), roles=roles)
    table = h('<div class="table-wrap"><table class="table"><thead><tr><th>User</th><th>Role</th><th>State</th>'
              '<th>Failed logins</th><th>Created</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>',
              rows=join(rows))
    body = h('{shown}{card}', shown=shown or "", card=card("Users", h("{a}{t}", a=add, t=table)))
    return layout(frame, title="Users", active="users", body=body)


def tokens_page(frame: Frame, *, tokens: Sequence[Mapping[str, Any]], shown: Markup | None = None) -> str:
    rows = []
    for t in tokens:
        revoked = t.get("revoked") is not None
        action = "" if revoked else h(
            '<form method="post" action="/tokens/{id}/revoke" class="inline">{csrf}<button type="submit" '
            'class="danger small" data-confirm="Revoke {name}? Integrations using it stop at once.">Revoke</button>'
            '</form>', id=t["id"], name=t["name"], csrf=csrf_input(frame))
        rows.append(h('<tr><td><strong>{name}</strong></td><td>{scope}</td><td>{by}</td><td>{created}</td>'
                      '<td>{used}</td><td>{state}</td><td class="buttons">{action}</td></tr>', name=t["name"],
                      scope=badge(t["scope"], "info"), by=t["created_by"], created=fmt_time(t["created"]),
                      used=fmt_time(t.get("last_used")), state=badge("revoked", "muted") if revoked
                      else badge("active", "ok"), action=action))
    scopes = join(h('<option value="{s}">{s}</option>', s=s) for s in SCOPES)
    add = h('<form method="post" action="/tokens" class="toolbar">{csrf}<input name="name" placeholder="name, e.g. '
            'home-assistant" required maxlength="64" aria-label="Token name"><select name="scope" aria-label="Scope">'
            '{scopes}</select><button type="submit" class="primary">Create token</button></form>'
            '<p class="hint">For integrations: send <code>Authorization: Bearer &lt;token&gt;</code>. Scopes: '
            '<code>read</code> (viewer), <code>operate</code> (read and commands), <code>admin</code>. The token is '
            'shown once and stored only as a hash. API description: <a href="/api/openapi.json">/api/openapi.json'
            '</a>.</p>', csrf=csrf_input(frame), scopes=scopes)
    table = h('<div class="table-wrap"><table class="table"><thead><tr><th>Name</th><th>Scope</th><th>Created by'
              '</th><th>Created</th><th>Last used</th><th>State</th><th></th></tr></thead><tbody>{rows}</tbody>'
              '</table></div>', rows=join(rows)) if rows else empty("No API token yet.")
    body = h('{shown}{card}', shown=shown or "", card=card("API access tokens", h("{a}{t}", a=add, t=table)))
    return layout(frame, title="API tokens", active="tokens", body=body)


def idtokens_page(frame: Frame, *, tokens: Sequence[Mapping[str, Any]] | None, kinds: Iterable[str]) -> str:
    if tokens is None:
        body = card("Badges", empty("No token store: this gateway has no id-token list."))
        return layout(frame, title="Badges", active="idtokens", body=body)
    admin = frame.can(Role.ADMIN)
    rows = []
    for t in tokens:
        action: Markup | str = ""
        if admin and t["status"] != "blocked":
            action = h('<form method="post" action="/idtokens/{id}/revoke" class="inline">{csrf}<button type="submit"'
                       ' class="danger small" data-confirm="Revoke this badge? It is refused from now on.">Revoke'
                       '</button></form>', id=t["id"], csrf=csrf_input(frame))
        rows.append(h('<tr><td class="num">{id}</td><td><strong>{label}</strong></td><td>{kind}</td><td><code>{hint}'
                      '</code></td><td>{status}</td><td>{created}</td><td>{expires}</td><td class="buttons">{action}'
                      '</td></tr>', id=t["id"], label=t["label"] or "—", kind=t["kind"], hint=t["hint"],
                      status=status_badge(t["status"]), created=fmt_time(t["created_at"]),
                      expires=fmt_date(t.get("expires_at")), action=action))
    add: Markup | str = ""
    if admin:
        options = join(h('<option value="{k}">{k}</option>', k=k) for k in kinds)
        add = h('<form method="post" action="/idtokens" class="toolbar">{csrf}<input name="token" placeholder="badge '
                'id (UID)" required maxlength="36" autocomplete="off" spellcheck="false" aria-label="Token">'
                '<input name="label" placeholder="label, e.g. van 2" maxlength="64" aria-label="Label">'
                '<select name="kind" aria-label="Kind">{options}</select><input type="date" name="expires" '
                'aria-label="Last valid day"><button type="submit" class="primary">Add badge</button></form>',
                csrf=csrf_input(frame), options=options)
    table = h('<div class="table-wrap"><table class="table"><thead><tr><th>#</th><th>Label</th><th>Kind</th><th>Hint'
              '</th><th>Status</th><th>Added</th><th>Last day</th><th></th></tr></thead><tbody>{rows}</tbody></table>'
              '</div>', rows=join(rows)) if rows else empty("No badge yet.")
    body = card("Badges allowed to charge", h(
        '<p class="hint">Id tokens are stored encrypted (DATA-001); only the last two characters are shown. '
        'Revocation applies at the next authorisation.</p>{a}{t}', a=add, t=table))
    return layout(frame, title="Badges", active="idtokens", body=body)


# -- factory reset ----------------------------------------------------------------------------------------------


def reset_page(frame: Frame, *, problem: str = "", done: bool = False) -> str:
    if done:
        body = card("Factory reset", h(
            '<div class="flash flash-warn" role="status"><strong>The gateway is stopping.</strong> Once stopped it '
            'erases its data directory (users, tokens, badges, transactions, enrollments, keys and certificates) and '
            'writes a fresh audit log that begins with the reset. Start it again to get a new one-time '
            'administrator password.</div>'))
        return layout(frame, title="Factory reset", active="reset", body=body)
    error = h('<div class="flash flash-error" role="alert">{p}</div>', p=problem) if problem else ""
    body = card("Factory reset", h(
        '{error}<p>Erases <strong>everything</strong> in the data directory: accounts, API tokens, badges, '
        'transactions, enrolled devices, the audit log, the encryption key and the certificates (DATA-002). Do this '
        'before disposal or a change of owner. The gateway stops; the erase runs as it exits.</p>'
        '<form method="post" action="/reset" class="stack narrow">{csrf}'
        '<label>Your password<input type="password" name="password" autocomplete="current-password" required '
        'maxlength="256"></label><label>Type ERASE to confirm<input name="confirm" required autocomplete="off" '
        'pattern="ERASE"></label><button type="submit" class="danger">Erase and stop the gateway</button></form>',
        error=error, csrf=csrf_input(frame)), cls="danger-zone")
    return layout(frame, title="Factory reset", active="reset", body=body)


# -- errors ------------------------------------------------------------------------------------------------------


def error_page(console: WebConsole, principal: Principal | None, status: int, message: str,
               problems: Sequence[str] = ()) -> str:
    frame = Frame(site=console.gw.name, principal=principal, tls=console.tls)
    items = join(h("<li>{p}</li>", p=p) for p in problems)
    body = card(f"{status}", h('<p>{m}</p>{items}<p><a href="/">Back to the overview</a></p>', m=message,
                               items=h("<ul>{i}</ul>", i=items) if problems else ""))
    return layout(frame, title="Error" if status >= 500 else "Not allowed" if status == 403 else "Not found"
                  if status == 404 else "Error", active="error", body=body)
