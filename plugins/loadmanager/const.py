"""Every limit and timing of the load manager, each with the reason it has the value it has.

Sources named below: IEC 61851-1:2017 Annex A (control pilot), the EEBUS LPC use case as quoted in
``shared/design/protocols/eebus.md`` §9.1 (requirement ids second-hand from evcc and EVerest), the BNetzA §14a
EnWG rules as commonly cited (evcc #25545), OCPP 1.6 §3.13 / ``protocols/ocpp.md`` §2.5, and evcc's
loadpoint defaults (``core/loadpoint.go``) where a practical value had to be chosen.
"""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "loadmanager"
CHARGER_DOMAIN: Final = "charger"
CONTEXT_ORIGIN: Final = "loadmanager"

PHASES: Final = 3

# -- site defaults -----------------------------------------------------------------------------------------

# Nominal voltage for A <-> W conversions. OCPP converts with the nominal voltage too (ocpp.md §2.5: "W -> A uses
# the *nominal* voltage (230 V) x numberPhases"), so our W limits and the stations' agree on what a number means.
DEFAULT_VOLTAGE_V: Final = 230.0

# Margin under the fuse rating. Meter and station readings are seconds old and a car needs up to 5 s to follow a
# lower current (IEC 61851-1 A.2.3, below); 1 A per phase absorbs that lag and the meter's noise. A short spike
# beyond it is carried by the fuse's slow trip curve (a gG fuse holds 1.45 x its rating for up to an hour).
DEFAULT_MARGIN_A: Final = 1.0
# Margin under the configured import power limit: one phase's worth of the margin above.
DEFAULT_MARGIN_W: Final = DEFAULT_MARGIN_A * DEFAULT_VOLTAGE_V

# A charger's current range when neither the config nor the charger tells: IEC 61851-1 makes 6 A the lowest
# PWM current (ocpp.md §2.5); 16 A is the common rating of a 11 kW wallbox.
DEFAULT_MIN_CURRENT_A: Final = 6.0
DEFAULT_MAX_CURRENT_A: Final = 16.0
# The highest current we ever command: 80 A is the top of IEC 61851-1's PWM range (Table A.7, 85 % -> 51 A,
# 96 % -> 80 A). A configured max above it is a typo.
MAX_CURRENT_A: Final = 80.0
# OCPP 1.6's SetChargingProfile schema has ``limit`` with ``multipleOf 0.1`` (ocpp.md §2.5): commands are
# rounded *down* to this step so that rounding never raises a current above what was allocated.
CURRENT_STEP_A: Final = 0.1
# Below this a current counts as zero (float noise from the water-filling).
EPSILON_A: Final = 1e-6

# -- equal priorities take turns ---------------------------------------------------------------------------

# A charger that started keeps its slot at least this long before an equal-priority waiter may take it over.
# 15 min: long enough that a car is not switched on and off every few minutes (each start/stop is a contactor
# cycle and, for some cars, a new charging session), short enough that two cars sharing one slot both get
# charge within an hour.
DEFAULT_MIN_RUN_S: Final = 15 * 60.0

# -- PV modes ----------------------------------------------------------------------------------------------

# A PV-mode charger starts after the surplus has covered its minimum power for this long, and stops after it has
# been short for PV_DISABLE_DELAY_S. evcc uses 1 min / 3 min (``core/loadpoint.go`` enable/disable delays): a
# passing cloud should not stop a car, a real sunset should.
PV_ENABLE_DELAY_S: Final = 60.0
PV_DISABLE_DELAY_S: Final = 180.0

# -- damping (what is sent to the stations) ----------------------------------------------------------------

# IEC 61851-1 A.2.3: the EV shall follow a change of the PWM duty cycle within 5 s. An increase is sent only
# after the higher target has held this long, so a short dip in the house load does not raise the cars.
INCREASE_HOLD_S: Final = 5.0
# At most one increase per charger in this time: twice the 5 s response time, so the previous step has shown in
# the meter before the next one is taken.
INCREASE_INTERVAL_S: Final = 10.0
# Increases smaller than this are not sent: 1 A is ~230 W per phase, about the noise of a busy house's meter;
# a station is not flapped for less. Decreases are never held back (safety first).
INCREASE_HYSTERESIS_A: Final = 1.0
# A decrease goes down to the next multiple of this (never below the charger's minimum): a slowly rising house
# load then moves a station every 0.5 A instead of every 0.1 A step. Lower is always safe; the lost current is at
# most 0.5 A per phase until the next increase.
DECREASE_QUANTUM_A: Final = 0.5
# A paused charger is not restarted sooner than this: cars and contactors dislike rapid on/off (evcc guards
# enable/disable changes for minutes for the same reason; 60 s keeps a short house-load spike from costing
# more than a minute of charging).
RESTART_DELAY_S: Final = 60.0
# The unchanged limit is sent again this often: the OCPP plugin may give its profiles a short duration so that a
# station falls back to its safe limit when we die (ocpp.md §2.5, fail-safe pattern); the refresh keeps them
# alive while we run, and repairs a station that rebooted and forgot the limit.
REFRESH_S: Final = 60.0
# A refused or failed command is retried after this long (the newest target, never a queue of old ones).
RETRY_S: Final = 5.0

# -- measurements ------------------------------------------------------------------------------------------

# A charger's own current readings older than this are not trusted (treated as drawing nothing, which makes the
# non-EV load look larger: the safe direction). OCPP stations commonly sample every 10 to 60 s.
CHARGER_MEASUREMENT_MAX_AGE_S: Final = 60.0
# Default age after which the grid meter counts as stale: five missed one-second polls plus transport slack.
DEFAULT_METER_MAX_AGE_S: Final = 10.0
# LOAD-001: above this age the load manager steers blind for longer than a fuse's short-time overload
# allowance (a gG fuse carries 1.45 x its rating for up to an hour, but 2 x for only seconds to a minute).
MAX_SAFE_METER_AGE_S: Final = 60.0

# -- external limits, modelled on EEBUS LPC (eebus.md §9.1) ---------------------------------------------------

# [LPC-911/912]: "the CS enters failsafe after 120 s without a heartbeat"; the EG heartbeats at least every
# 60 s (evcc #21642, the eebus-go maintainer: "heartbeat every <= 60 s ... missing if for 120 s there is NO
# heartbeat").
HEARTBEAT_INTERVAL_S: Final = 60.0
HEARTBEAT_TIMEOUT_S: Final = 120.0
# [LPC-906]: from Init the CS goes autonomous after 120 s without reaching a controlled state.
INIT_TIMEOUT_S: Final = 120.0
# [LPC-022]: failsafeDurationMinimum is 2 h to 24 h; 2 h is the default of evcc and EVerest.
DEFAULT_FAILSAFE_MIN_DURATION_S: Final = 2 * 3600.0
FAILSAFE_MIN_DURATION_RANGE_S: Final = (2 * 3600.0, 24 * 3600.0)
# §14a EnWG: a grid operator may dim a controllable device, but not below 4.2 kW (evcc #25545, eebus.md §9.1;
# the exact Festlegung text is marked "verify" there). Lower limits are clamped up to it and logged.
MIN_EXTERNAL_LIMIT_W: Final = 4200.0
# Failsafe limit when the config names none: the §14a minimum, the lowest value a grid operator may demand.
DEFAULT_FAILSAFE_LIMIT_W: Final = MIN_EXTERNAL_LIMIT_W
# A limit's duration longer than this is a mistake (a limit without duration never expires; say so instead).
MAX_LIMIT_DURATION_S: Final = 7 * 24 * 3600.0

# -- the adapter -------------------------------------------------------------------------------------------

# Even with no event, the loop wakes this often to re-read the meter's age (states fire no event when a reading
# repeats the previous value, so staleness can only be seen by looking).
MAX_SLEEP_S: Final = 1.0
# How many limit commands may be in flight at once across all stations: enough for 1,000 stations to be told
# within one round, few enough that a burst does not flood the event loop.
MAX_CONCURRENT_COMMANDS: Final = 256

# Audit event names (stable: external tools filter on them).
AUDIT_SITE_LIMIT: Final = "loadmanager.site_limit"
AUDIT_FAILSAFE: Final = "loadmanager.failsafe"
AUDIT_SOURCE_FORGOTTEN: Final = "loadmanager.source_forgotten"
