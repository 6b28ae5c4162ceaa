"""Every limit and wire constant of the Modbus plugin, each with its reason.

Sources: "MODBUS Application Protocol Specification V1.1b3" (2012, below "AP §"), "MODBUS Messaging on TCP/IP
Implementation Guide V1.0b" (2006, "TCP §"), "MODBUS/TCP Security Protocol Specification" (2018, "SEC §"),
and ``shared/design/protocols/modbus.md`` (the protocol note).
"""

from __future__ import annotations

DOMAIN = "modbus"

# -- wire ------------------------------------------------------------------------------------------------

DEFAULT_PORT = 502  # IANA "mbap"
DEFAULT_TLS_PORT = 802  # IANA "mbap-s"; SEC §5: Modbus/TCP Security listens on 802

MBAP_HEADER_LEN = 7  # transaction id (2), protocol id (2), length (2), unit id (1); TCP §3.1.3
PROTOCOL_ID = 0  # TCP §3.1.3: "0 = MODBUS protocol"; anything else is not Modbus and closes the link
# AP §4.1: "the size of the MODBUS PDU is limited ... to 253 bytes"; the MBAP length field counts the unit id
# too, so a valid length is 2 (unit id + function code) .. 254.
MAX_PDU_LEN = 253
MIN_MBAP_LENGTH = 2
MAX_MBAP_LENGTH = MAX_PDU_LEN + 1
MAX_ADU_LEN = MBAP_HEADER_LEN - 1 + MAX_MBAP_LENGTH  # 260 bytes, TCP §3.1.3

# AP §6.3 / §6.4: "Quantity of Registers 1 to 125 (0x7D)" for FC3/FC4 (125 x 2 bytes + 2 = 252 <= 253).
MAX_READ_REGISTERS = 125
# AP §6.12: FC16 "Quantity of Registers 1 to 123 (0x7B)".
MAX_WRITE_REGISTERS = 123
REGISTER_SPACE = 0x10000  # PDU addresses 0..65535 (AP §4.4)

FC_READ_HOLDING = 3
FC_READ_INPUT = 4
FC_WRITE_SINGLE = 6
FC_WRITE_MULTIPLE = 16
# Write function codes we never implement; they get 0x01 like any unknown code (AP §7, protocol note §3).
FC_WRITES = frozenset({5, 6, 15, 16, 22, 23})
EXCEPTION_FLAG = 0x80  # AP §7: exception response = function code + 0x80

EXC_ILLEGAL_FUNCTION = 0x01
EXC_ILLEGAL_DATA_ADDRESS = 0x02
EXC_ILLEGAL_DATA_VALUE = 0x03
EXC_SERVER_DEVICE_FAILURE = 0x04
EXC_GATEWAY_TARGET_FAILED = 0x0B  # AP §7: used for a unit id we do not serve (as Modbus/TCP gateways do)

# TCP §4.4.1.2: "On TCP/IP, the MODBUS server is addressed using its IP address; therefore, the MODBUS Unit
# Identifier is useless. The value 0xFF has to be used." We answer our configured unit id and 0xFF.
UNIT_ID_TCP_ANY = 0xFF
BROADCAST_UNIT_ID = 0  # AP §2.2 / serial line: broadcast; never polled (protocol note: "never device id 0")
MAX_UNIT_ID = 247  # serial line spec: 1..247 are individual addresses

# SEC §6.x (protocol note §4): the role travels in this private certificate extension as a UTF8String.
ROLE_OID = "1.3.6.1.4.1.50316.802.1"

# -- server limits ---------------------------------------------------------------------------------------

# A site controller has one or two energy managers or SCADA masters; 16 concurrent links leave room for
# diagnostics tools without letting one scanner exhaust file descriptors (the note's "200 parallel
# connections from one IP" hostile case).
MAX_CLIENTS = 16
MAX_CLIENTS_PER_ADDRESS = 4
# TCP §4.2.1 leaves the idle policy to the server; masters poll every few seconds, 120 s of silence means a
# half-open or forgotten link.
IDLE_TIMEOUT_S = 120.0
# A TLS handshake on a LAN takes milliseconds; 10 s bounds what a slowloris-style peer can hold.
TLS_HANDSHAKE_TIMEOUT_S = 10.0
# Pipelined requests are answered in order; while a write waits for its service at most this many parsed
# requests queue behind it before we stop reading from that peer (TCP flow control does the rest).
MAX_QUEUED_REQUESTS = 32
# A write calls a gateway service; one that hangs must not hold the connection forever.
WRITE_SERVICE_TIMEOUT_S = 5.0
# Refused peers are audited, but one scanner hammering the port must not flood the audit log: one entry per
# address per interval, with the count of refusals since the last one.
AUDIT_REFUSED_INTERVAL_S = 60.0

# -- client (meter polling) ------------------------------------------------------------------------------

DEFAULT_POLL_INTERVAL_S = 5.0
MIN_POLL_INTERVAL_S = 0.05  # tests and benches poll fast; below this a single RS-485 bus cannot keep up
DEFAULT_TIMEOUT_S = 1.0  # protocol note §5: "for polling use timeout=1, retries=1"
DEFAULT_RETRIES = 1
MAX_RETRIES = 5
RETRY_BACKOFF_S = 0.05  # first retry after 50 ms, doubling: a busy meter answers the next request
# After a failed poll the next attempt waits poll_interval x 2^n, at most this long: a meter that was switched
# off comes back within half a minute of being switched on again, without hammering a dead link.
MAX_BACKOFF_S = 30.0
# Greedy batching reads across holes of at most this many unused registers (protocol note §1: "some meters
# refuse reads that cross gaps"; a map file lowers it, or sets max_block, when its meter does).
DEFAULT_MAX_GAP = 16
# A device that answers 0x02 to a merged block gets its points read one group at a time from then on.
SUNSPEC_BASES = (40000, 0, 50000)  # SunSpec Information Model spec §5: base register search order
SUNSPEC_MARKER = (0x5375, 0x6E53)  # "SunS"
SUNSPEC_END = 0xFFFF
SUNSPEC_MAX_MODELS = 64  # a walk longer than this is a device bug or a hostile peer

# Plausibility bounds (protocol note §1: "A value that fails plausibility is logged and dropped, not
# clamped"): beyond these no low-voltage site meter reads; a value outside is a decoding or wiring error.
PLAUSIBLE = {
    "voltage": (0.0, 1_000.0),  # V: LV networks are <= 1 kV by definition (IEC 60038)
    "current": (-10_000.0, 10_000.0),  # A
    "power": (-10_000_000.0, 10_000_000.0),  # W: 10 MW, far above any LV connection
    "energy": (0.0, 1e13),  # Wh: 10 TWh, a meter register cannot be larger
    "frequency": (0.0, 100.0),  # Hz (0 when a meter loses its voltage reference)
}
