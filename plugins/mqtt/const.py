"""Names, defaults and limits of the MQTT plugin. Every limit says why it has the value it has."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "mqtt"

# -- connection ------------------------------------------------------------------------------------------------

DEFAULT_PORT: Final = 1883  # IANA "mqtt"
DEFAULT_TLS_PORT: Final = 8883  # IANA "secure-mqtt"
PROTOCOL_V5: Final = "5"
PROTOCOL_V311: Final = "3.1.1"
PROTOCOLS: Final = (PROTOCOL_V5, PROTOCOL_V311)

# MQTT 5 §3.1.2.10: the client must send a PINGREQ within this many seconds of silence. 30 s finds a dead
# broker within ~45 s (keepalive x 1.5, §3.1.2.10) without chatter; Home Assistant and Mosquitto's clients
# default to 60 s. Brokers may lower it (Server Keep Alive), paho then follows the broker.
DEFAULT_KEEPALIVE_S: Final = 30.0
MIN_KEEPALIVE_S: Final = 5.0
MAX_KEEPALIVE_S: Final = 65_535.0  # the field is two bytes (§3.1.2.10)

# DNS, TCP connect and the TLS handshake run in an executor thread (paho's connect() blocks); paho's own
# default is 5 s. A CONNACK must follow within the same budget or the attempt counts as failed.
CONNECT_TIMEOUT_S: Final = 5.0
CONNACK_TIMEOUT_S: Final = 10.0

# paho's loop_misc() sends PINGREQ and notices a missing PINGRESP; once a second is what paho's own
# loop_forever() does between selects and what Home Assistant's client schedules.
MISC_INTERVAL_S: Final = 1.0

# Reconnect back-off: exponential from BACKOFF_INITIAL_S, doubling, capped at BACKOFF_MAX_S, each delay
# multiplied by a random factor in [1 - BACKOFF_JITTER, 1] ("equal jitter" in AWS's architecture blog
# "Exponential Backoff And Jitter") so that a fleet of gateways does not stampede a restarted broker.
# paho's own reconnect has no jitter (protocols/mqtt.md §3), which is one reason we run our own.
BACKOFF_INITIAL_S: Final = 1.0
BACKOFF_FACTOR: Final = 2.0
BACKOFF_MAX_S: Final = 60.0
BACKOFF_JITTER: Final = 0.5
# A broker that refused our credentials will refuse them again: after an authentication failure the next
# attempt waits the full BACKOFF_MAX_S, so we do not trip the broker's own lockouts or flood its log while
# an installer fixes the password file (protocols/mqtt.md §3 suggests stopping; a broker-side fix then
# needs no gateway restart this way).

# On stop we publish "offline" and a DISCONNECT; this long is given for them to reach the socket.
STOP_FLUSH_TIMEOUT_S: Final = 1.0

# paho queues QoS>0 messages without limit while disconnected (protocols/mqtt.md §2); states are
# republished as a snapshot on reconnect, so the queue only has to hold replies and availability.
MAX_QUEUED_MESSAGES: Final = 1_000
# MQTT 5 CONNECT Maximum Packet Size (§3.1.2.11.4): the broker must not send us anything larger and drops
# it instead. Commands are at most MAX_COMMAND_BYTES; 64 KiB leaves room for topics and properties and
# bounds what a client allowed on our command topic can make paho buffer. MQTT 3.1.1 has no such field:
# set the broker's message_size_limit / max_packet_size there (docs/plugins/mqtt.md).
MAX_INBOUND_PACKET_BYTES: Final = 65_536
# In-flight QoS 1 messages before paho queues locally (paho's default is 20; Mosquitto's
# max_inflight_messages default is 20 as well). Replies and discovery use QoS 1; 100 keeps a discovery
# burst of a few hundred entities moving without waiting a round trip per 20.
MAX_INFLIGHT_QOS1: Final = 100

# -- states out ------------------------------------------------------------------------------------------------

# One entity publishes at most once per min_interval (latest value wins). 1 s matches the fastest useful
# refresh of a dashboard and the OCPP MeterValues sample interval most stations are set to.
DEFAULT_MIN_INTERVAL_S: Final = 1.0
MAX_MIN_INTERVAL_S: Final = 3_600.0

# Flow control towards paho, whose out-buffer has no bound of its own: a batch of at most PUMP_BATCH
# messages is handed over only once paho has written everything before it to the socket (``want_write()``
# false). A slow broker therefore fills the kernel's socket buffer and then our coalescing outbox (bounded
# below), never paho's memory. QoS 1 messages (availability, replies, discovery) also count until their
# PUBACK: at most MAX_UNACKED_QOS1, below paho's MAX_QUEUED_MESSAGES so that paho never refuses one.
MAX_UNACKED_QOS1: Final = 500
# Distinct entities waiting to be published. Each holds one slot whatever the number of changes (latest
# value wins); a site with more entities than this (3,000 OCPP stations x ~10 entities is 30,000) drops new
# entries and counts them until the broker catches up. The snapshot on reconnect also goes through here.
MAX_PENDING_ENTITIES: Final = 50_000
# Publishes the pump hands to paho in one go before the loop writes them, so that a snapshot of 50,000
# entities does not block the loop for long (1,000 publish() calls take ~10-30 ms) and paho holds at most
# ~100 KB (1,000 messages of ~100 bytes) at a time.
PUMP_BATCH: Final = 1_000
# The dropped-messages counter becomes the state sensor.mqtt_dropped at most this often.
DROPPED_STATE_INTERVAL_S: Final = 5.0
DROPPED_ENTITY: Final = "sensor.mqtt_dropped"

# -- commands in -----------------------------------------------------------------------------------------------

# A command is a small JSON object (a current limit, a charger id). 4 KiB is 20x the largest command any
# Ampgate service takes, and the limit protocols/mqtt.md §5 sets; larger payloads are refused unparsed.
MAX_COMMAND_BYTES: Final = 4_096
# JSON nesting allowed in a command: service data is flat or one level deep; deeper structures are only
# useful to attack the parser's recursion.
MAX_COMMAND_DEPTH: Final = 8
# MQTT topics may be 65,535 bytes (MQTT 5 §1.5.4); a response topic we will publish to is kept short.
MAX_RESPONSE_TOPIC_BYTES: Final = 256
MAX_CORRELATION_BYTES: Final = 256  # the correlation data we echo back
MAX_CLAIMED_USER_CHARS: Final = 64  # the v5 user property we copy into the context, as a claim

# Commands steer chargers; a person or a home-automation rule sends a few per minute. 20/s with a burst of
# 40 absorbs a dashboard replaying its queue after a reconnect and stops a runaway script.
COMMAND_RATE_PER_S: Final = 20.0
COMMAND_BURST: Final = 40
# Commands being executed at once; a further one is refused as busy rather than queued without bound.
MAX_CONCURRENT_COMMANDS: Final = 16
# A service that does not answer within this is cancelled and reported as timed out to the caller. OCPP's
# own call timeout is 30 s, the longest a charger command legitimately takes.
COMMAND_TIMEOUT_S: Final = 30.0
# On stop, audit records still being written get this long (out of the loader's 2 s per plugin).
AUDIT_FLUSH_TIMEOUT_S: Final = 0.5
# Error replies are themselves rate limited: a flood of garbage must not turn the gateway into an amplifier
# for the broker. Beyond the budget errors are counted and logged once per interval, not answered.
ERROR_REPLY_RATE_PER_S: Final = 5.0
ERROR_REPLY_BURST: Final = 20
ERROR_LOG_INTERVAL_S: Final = 60.0

# User property names (MQTT 5 §3.3.2.3.7) we read as the sender's *claimed* name. A claim only: the broker
# does not vouch for it; the broker's ACL on our command topic is what says who may command.
CLAIMED_USER_PROPERTIES: Final = ("user", "sender", "principal")

# -- topics ----------------------------------------------------------------------------------------------------

STATE_SUFFIX: Final = "state"
ATTRIBUTES_SUFFIX: Final = "attributes"
STATUS_LEVEL: Final = "status"
COMMAND_LEVEL: Final = "cmd"
RESULT_LEVEL: Final = "result"
# <prefix>/reply/...: the one place under our own prefix a command's MQTT 5 response topic may point to, so a
# broker ACL of "<prefix>/#" for the gateway is enough for request/response (docs/scaling.md).
REPLY_LEVEL: Final = "reply"
PAYLOAD_ONLINE: Final = "online"
PAYLOAD_OFFLINE: Final = "offline"

# -- Home Assistant discovery ----------------------------------------------------------------------------------

DEFAULT_DISCOVERY_PREFIX: Final = "homeassistant"
HA_STATUS_SUFFIX: Final = "status"  # HA's birth/will topic: <discovery prefix>/status
MANUFACTURER: Final = "Ampgate"
