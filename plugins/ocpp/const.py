"""Every name, limit and wire constant of the OCPP plugin, each with its reason.

Spec references: OCPP-J 1.6 (2015) and its errata sheet v1.0 (2019-12); "Improved security for OCPP 1.6-J"
(whitepaper); OCPP 2.0.1 Part 4 (OCPP-J) and Part 2 Appendices. See shared/design/protocols/ocpp.md.
"""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "ocpp"
CHARGER_DOMAIN: Final = "charger"  # the protocol-free capability domain (load manager, web UI)

# -- versions and subprotocols (OCPP-J 1.6 §3.1.2; 2.0.1 Part 4 §3.1.2) ------------------------------------
VERSION_16: Final = "1.6"
VERSION_201: Final = "2.0.1"
SUBPROTOCOLS: Final = {"ocpp1.6": VERSION_16, "ocpp2.0.1": VERSION_201}
SUBPROTOCOL_OF: Final = {v: k for k, v in SUBPROTOCOLS.items()}
VERSIONS: Final = (VERSION_16, VERSION_201)

# -- listener defaults ------------------------------------------------------------------------------------
DEFAULT_BIND: Final = "127.0.0.1"  # secure default: nothing off the host until an installer opens it
DEFAULT_PORT: Final = 9443  # wss; 8443 is commonly the web UI's
DEFAULT_PATH: Final = "/ocpp"  # stations dial wss://host:port/ocpp/<identity>

# -- frame gate limits (ocpp.md §3 "Ampgate frame gate") -----------------------------------------------------
# 64 KiB: the largest legitimate frames are CertificateSigned (chain <= 10,000 chars, 1.6 whitepaper) and
# GetConfiguration/NotifyReport answers; MeterValues of a 3-phase station with 20 measurands stay < 8 KiB.
# websockets closes the connection with 1009 (message too big) beyond it, before anything is parsed.
MAX_FRAME_BYTES: Final = 64 * 1024
# OCPP-J 1.6 §4.1.4 and 2.0.1 Part 4 §4.1.3: "maximum of 36 characters" for the message id.
MAX_MESSAGE_ID_CHARS: Final = 36
# OCPP payloads nest at most ~6 levels (SetChargingProfile); 32 leaves room and stops recursion bombs.
MAX_JSON_DEPTH: Final = 32
# 2.0.1 Part 2 identifierString for the station identity: max 48 chars; we apply it to 1.6 too.
MAX_IDENTITY_CHARS: Final = 48
# What we accept in an identity after one percent-decoding (ocpp.md §4.1): 2.0.1 identifierString minus ':'
# (the Basic Auth separator).
IDENTITY_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*_=+.|@-")
# 2.0.1 Part 4 §4.2.3: CALLERROR description at most 255 characters.
MAX_ERROR_DESCRIPTION_CHARS: Final = 255
# What a CALLERROR id is when the frame's id could not be read (2.0.1 Part 4 §4.2.3 / §4.3).
UNREADABLE_MESSAGE_ID: Final = "-1"

# -- per-connection rate limit and error budget (ocpp.md §3, OCPP-007) -------------------------------------
# A station sends one CALL and waits for the answer (OCPP-J §4.1.1 synchronicity), so even the replay of a
# transaction queue after a long outage stays at a few calls per second. Beyond the burst we *delay* the
# station's calls (back-pressure, no error a station could mishandle); websockets' receive queue and TCP
# then slow a station that does not wait for answers. Other stations are untouched: the limit is per socket.
CALL_RATE_PER_S: Final = 20.0
CALL_BURST: Final = 60
# Protocol errors (bad frames) a connection may make per window before we close it with 1008 and raise a
# security event: a misbehaving firmware makes a few, an attacker probing the parser makes many.
ERROR_BUDGET: Final = 20
ERROR_WINDOW_S: Final = 60.0

# -- handshake and liveness ----------------------------------------------------------------------------------
# TLS handshake + HTTP request + our authentication must finish within this (slowloris). Real stations on a
# LAN finish in well under a second; 10 s is websockets' default and tolerates slow embedded TLS stacks.
HANDSHAKE_TIMEOUT_S: Final = 10.0
# WebSocket ping (OCPP-J 1.6 §5.3 "WebSocketPingInterval"); half-open TCP connections are found by it.
PING_INTERVAL_S: Final = 60.0
PING_TIMEOUT_S: Final = 30.0
# A second connection of an already connected identity from another address: ping the old connection and
# refuse the newcomer if the old one answers within this (ocpp.md §4.5, OCPP-007).
DUPLICATE_PROBE_TIMEOUT_S: Final = 5.0
# How long we wait for a station's answer to our CALL (the library's default). A timeout means "outcome
# unknown", never "rejected" (ocpp.md §5 pitfall 6).
RESPONSE_TIMEOUT_S: Final = 30.0
# Frames a connection may queue before websockets stops reading the socket (back-pressure).
MAX_QUEUED_FRAMES: Final = 16

# -- authentication (OCPP-009, ocpp.md §4.4) -------------------------------------------------------------------
MIN_PASSWORD_BYTES: Final = 16  # 1.6 whitepaper: AuthorizationKey of 16 to 20 bytes; 2.0.1: 16-40 chars
MAX_PASSWORD_BYTES_16: Final = 20
MAX_PASSWORD_BYTES_201: Final = 40
GENERATED_PASSWORD_CHARS: Final = 20  # `ampgate ocpp password`: 20 printable chars (~119 bits)
# Failed authentications per (identity, address) before further attempts are refused unchecked for the
# lock-out period, and one security event is raised (OCPP-007). Stations retry with back-off (errata §3.3).
AUTH_FAILURE_LIMIT: Final = 5
AUTH_FAILURE_WINDOW_S: Final = 300.0
AUTH_LOCKOUT_S: Final = 300.0
BASIC_REALM: Final = "ocpp"
# Entries the failure tracker keeps at most (one per identity+address pair): an attacker rotating fake
# identities cannot grow it without bound.
MAX_TRACKED_FAILURES: Final = 4096
# Unknown identities enqueued for enrollment per address per hour: a scanner must not flood the queue.
ENROLLMENT_REQUESTS_PER_ADDRESS: Final = 10
ENROLLMENT_WINDOW_S: Final = 3600.0

# -- registration --------------------------------------------------------------------------------------------
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 300  # answered in BootNotification; clock sync + liveness
# A station answered Rejected must stay silent this long before booting again (1.6 §4.2, 2.0.1 B01).
REJECTED_RETRY_INTERVAL_S: Final = 300

# -- measurements and charging profiles (ocpp.md §2.4, §2.5) ---------------------------------------------------
NOMINAL_VOLTAGE_V: Final = 230.0  # A <-> W conversion uses the nominal voltage, never a measured one
MIN_PWM_CURRENT_A: Final = 6.0  # IEC 61851-1: the lowest current a PWM signal can announce
# Our charging profile: one fixed id and stack level reserved for the local limit, so a new limit replaces
# the previous one (same purpose + stack level replaces, 1.6 §3.13.2) and never piles up profiles.
PROFILE_ID: Final = 4711
PROFILE_STACK_LEVEL: Final = 1
# Transaction and meter texts we copy from stations are cut to the schema maxima.
MAX_REASON_CHARS: Final = 50
MAX_SECURITY_EVENT_TYPE_CHARS: Final = 50  # SecurityEventNotification.type (1.6 whitepaper, 2.0.1)
MAX_TECH_INFO_CHARS: Final = 255
# A remote start without a badge uses a one-time token the station may Authorize for this long.
REMOTE_START_TOKEN_TTL_S: Final = 120.0

# -- charger capability statuses (the contract the load manager and the web UI read) -------------------------
STATUS_AVAILABLE: Final = "available"
STATUS_PREPARING: Final = "preparing"
STATUS_CHARGING: Final = "charging"
STATUS_SUSPENDED_EV: Final = "suspended_ev"
STATUS_SUSPENDED_EVSE: Final = "suspended_evse"
STATUS_FINISHING: Final = "finishing"
STATUS_RESERVED: Final = "reserved"
STATUS_FAULTED: Final = "faulted"
STATUS_UNAVAILABLE: Final = "unavailable"
CHARGER_STATUSES: Final = (
    STATUS_AVAILABLE, STATUS_PREPARING, STATUS_CHARGING, STATUS_SUSPENDED_EV, STATUS_SUSPENDED_EVSE,
    STATUS_FINISHING, STATUS_RESERVED, STATUS_FAULTED, STATUS_UNAVAILABLE,
)

# -- bus events -------------------------------------------------------------------------------------------------
EVENT_SECURITY: Final = "ocpp_security_event"  # a station's SecurityEventNotification, or one of ours
EVENT_TRANSACTION: Final = "charger_transaction"  # a session started or ended (protocol-free data)
EVENT_CONNECTION: Final = "charger_connection"  # a station connected or dropped

# -- audit event names (the core's EVENT_SECURITY is used for refusals) -----------------------------------
AUDIT_STATION_SECURITY_EVENT: Final = "ocpp.station_security_event"
AUDIT_RESET: Final = "ocpp.reset"
AUDIT_CONFIGURATION: Final = "ocpp.configuration_changed"
