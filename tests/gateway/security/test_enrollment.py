"""The enrollment queue (DISC-001): nothing discovered is trusted until an administrator approves it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.bus import Event, EventBus
from gateway.context import Context, Role
from gateway.errors import Unauthorized
from gateway.security import enrollment
from gateway.security.audit import EVENT_ENROLLMENT, EVENT_SECURITY, AuditLog
from gateway.security.enrollment import (
    APPROVED,
    EVENT_DECIDED,
    EVENT_FINGERPRINT_CHANGED,
    EVENT_REQUESTED,
    PENDING,
    REJECTED,
    EnrollmentQueue,
    EnrollmentQueueFull,
    UnknownEnrollment,
)
from gateway.storage import Storage

ADMIN = Context(origin="cli", principal="alice", role=Role.ADMIN)
OPERATOR = Context(origin="web", principal="bob", role=Role.OPERATOR, address="192.0.2.7")
FP_A = "AA:BB:CC:DD:EE:FF:00:11"
FP_B = "ffeeddccbbaa9988"
T0 = 1_700_000_000.0


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def events(bus: EventBus) -> list[Event]:
    seen: list[Event] = []
    bus.subscribe("device_*", seen.append)
    return seen


@pytest.fixture
def queue(storage: Storage, audit: AuditLog, bus: EventBus) -> EnrollmentQueue:
    return EnrollmentQueue(storage, audit, bus)


def test_unknown_device_is_pending_and_not_trusted(queue: EnrollmentQueue, events: list[Event]) -> None:
    entry = queue.request_sync("ocpp", "CP01", address="192.0.2.10", info={"vendor": "ACME"}, now=T0)
    assert entry.status == PENDING and entry.created
    assert (entry.address, entry.info, entry.first_seen, entry.last_seen) == ("192.0.2.10", {"vendor": "ACME"}, T0, T0)
    assert queue.status_sync("ocpp", "CP01") == PENDING
    assert not queue.is_trusted("ocpp", "CP01")
    assert queue.status_sync("ocpp", "never-seen") is None
    assert [e.type for e in events] == [EVENT_REQUESTED]
    assert events[0].data["identity"] == "CP01"

    again = queue.request_sync("ocpp", "CP01", address="192.0.2.11", now=T0 + 60)
    assert not again.created and again.status == PENDING
    assert (again.address, again.first_seen, again.last_seen, again.info) == ("192.0.2.11", T0, T0 + 60, {"vendor": "ACME"})
    assert len(events) == 1, "only the first request is announced"


def test_approve_makes_trusted_and_audits_who(queue: EnrollmentQueue, audit: AuditLog, events: list[Event]) -> None:
    queue.request_sync("eebus", "ski-1234")
    entry = queue.approve_sync("eebus", "ski-1234", ADMIN)
    assert entry.status == APPROVED and entry.decided_by == "cli:alice" and entry.decided_at is not None
    assert queue.is_trusted("eebus", "ski-1234")
    assert not queue.is_trusted("ocpp", "ski-1234"), "trust is per kind"

    records = audit.list_sync(event_prefix=EVENT_ENROLLMENT)
    assert len(records) == 1
    assert records[0].actor == "cli:alice"
    assert records[0].data["action"] == APPROVED and records[0].data["identity"] == "ski-1234"
    assert records[0].data["previous_status"] == PENDING
    decided = [e for e in events if e.type == EVENT_DECIDED]
    assert len(decided) == 1 and decided[0].context is ADMIN and decided[0].data["status"] == APPROVED
    assert audit.verify_sync().ok


def test_reject_is_final_for_later_requests(queue: EnrollmentQueue, audit: AuditLog) -> None:
    queue.request_sync("ssdp", "uuid:abc")
    entry = queue.reject_sync("ssdp", "uuid:abc", ADMIN, reason="not ours")
    assert entry.status == REJECTED and entry.reason == "not ours"
    assert not queue.is_trusted("ssdp", "uuid:abc")
    later = queue.request_sync("ssdp", "uuid:abc", address="192.0.2.99", fingerprint=FP_A)
    assert later.status == REJECTED and not later.created
    assert not queue.is_trusted("ssdp", "uuid:abc", FP_A)
    assert audit.list_sync(event_prefix=EVENT_ENROLLMENT)[-1].data["reason"] == "not ours"


def test_rejecting_an_approved_device_revokes_trust(queue: EnrollmentQueue) -> None:
    queue.request_sync("mdns", "charger._http._tcp.local.")
    queue.approve_sync("mdns", "charger._http._tcp.local.", ADMIN)
    assert queue.is_trusted("mdns", "charger._http._tcp.local.")
    queue.reject_sync("mdns", "charger._http._tcp.local.", ADMIN)
    assert not queue.is_trusted("mdns", "charger._http._tcp.local.")


def test_changed_fingerprint_on_approved_entry_is_not_trusted_and_audited(
    queue: EnrollmentQueue, audit: AuditLog, events: list[Event]
) -> None:
    queue.request_sync("ocpp", "CP02", fingerprint=FP_A)
    entry = queue.approve_sync("ocpp", "CP02", ADMIN)
    assert entry.fingerprint == "aabbccddeeff0011", "the fingerprint seen while pending is pinned"
    assert queue.is_trusted("ocpp", "CP02", FP_A)
    assert queue.is_trusted("ocpp", "CP02", "aabbccddeeff0011"), "hex spelling does not matter"
    assert not queue.is_trusted("ocpp", "CP02"), "a pinned entry needs the fingerprint presented"

    changed = queue.request_sync("ocpp", "CP02", address="198.51.100.1", fingerprint=FP_B)
    assert changed.status == APPROVED
    assert changed.fingerprint_changed
    assert changed.fingerprint == "aabbccddeeff0011" and changed.offered_fingerprint == FP_B
    assert not queue.is_trusted("ocpp", "CP02", FP_B)
    assert queue.is_trusted("ocpp", "CP02", FP_A), "the pinned key keeps working"

    security = audit.list_sync(event_prefix=EVENT_SECURITY)
    assert len(security) == 1
    assert security[0].data["type"] == "fingerprint_changed"
    assert security[0].data["offered_fingerprint"] == FP_B
    assert security[0].data["pinned_fingerprint"] == "aabbccddeeff0011"
    assert [e.type for e in events].count(EVENT_FINGERPRINT_CHANGED) == 1

    queue.request_sync("ocpp", "CP02", fingerprint=FP_B)
    assert len(audit.list_sync(event_prefix=EVENT_SECURITY)) == 1, "one record per new fingerprint, not per retry"

    # An administrator who reviews the change and approves again pins the new key.
    reviewed = queue.approve_sync("ocpp", "CP02", ADMIN)
    assert reviewed.fingerprint == FP_B and not reviewed.fingerprint_changed
    assert queue.is_trusted("ocpp", "CP02", FP_B) and not queue.is_trusted("ocpp", "CP02", FP_A)
    assert audit.list_sync(event_prefix=EVENT_ENROLLMENT)[-1].data["previous_fingerprint"] == "aabbccddeeff0011"
    assert audit.verify_sync().ok


def test_approve_with_explicit_fingerprint(queue: EnrollmentQueue) -> None:
    queue.request_sync("eebus", "ski-9", fingerprint=FP_B)
    queue.approve_sync("eebus", "ski-9", ADMIN, fingerprint=FP_A)
    assert queue.is_trusted("eebus", "ski-9", FP_A)
    assert not queue.is_trusted("eebus", "ski-9", FP_B)


def test_state_persists_across_a_new_queue(tmp_path: Path) -> None:
    first = Storage(tmp_path).open()
    try:
        q = EnrollmentQueue(first, AuditLog(first))
        q.request_sync("ocpp", "CP01", fingerprint=FP_A)
        q.approve_sync("ocpp", "CP01", ADMIN)
        q.request_sync("ocpp", "CP02")
        q.request_sync("ocpp", "CP03")
        q.reject_sync("ocpp", "CP03", ADMIN)
    finally:
        first.close()
    second = Storage(tmp_path).open()
    try:
        q = EnrollmentQueue(second, AuditLog(second))
        assert q.is_trusted("ocpp", "CP01", FP_A)
        assert not q.is_trusted("ocpp", "CP02")
        assert [(e.identity, e.status) for e in q.list_sync()] == [
            ("CP01", APPROVED), ("CP02", PENDING), ("CP03", REJECTED)
        ]
        assert q.get_sync("ocpp", "CP01") is not None
    finally:
        second.close()


def test_only_an_admin_decides(queue: EnrollmentQueue, audit: AuditLog) -> None:
    queue.request_sync("ocpp", "CP01")
    with pytest.raises(Unauthorized) as caught:
        queue.approve_sync("ocpp", "CP01", OPERATOR)
    assert caught.value.context is OPERATOR
    with pytest.raises(Unauthorized):
        queue.add_approved_sync("ocpp", "CP09", OPERATOR)
    with pytest.raises(Unauthorized):
        queue.remove_sync("ocpp", "CP01", OPERATOR)
    assert queue.status_sync("ocpp", "CP01") == PENDING
    assert not queue.is_trusted("ocpp", "CP01")
    assert audit.list_sync(event_prefix=EVENT_ENROLLMENT) == []


def test_remove_forgets_the_device(queue: EnrollmentQueue, audit: AuditLog, events: list[Event]) -> None:
    queue.request_sync("modbus", "192.0.2.5:502/1")
    queue.approve_sync("modbus", "192.0.2.5:502/1", ADMIN)
    queue.remove_sync("modbus", "192.0.2.5:502/1", ADMIN)
    assert not queue.is_trusted("modbus", "192.0.2.5:502/1")
    assert queue.status_sync("modbus", "192.0.2.5:502/1") is None
    assert audit.list_sync(event_prefix=EVENT_ENROLLMENT)[-1].data["action"] == "removed"
    assert events[-1].type == EVENT_DECIDED and events[-1].data["status"] == "removed"
    assert queue.request_sync("modbus", "192.0.2.5:502/1").status == PENDING, "asking again starts over"
    with pytest.raises(UnknownEnrollment):
        queue.remove_sync("modbus", "nothing", ADMIN)
    with pytest.raises(UnknownEnrollment):
        queue.approve_sync("modbus", "nothing", ADMIN)


def test_add_approved_from_configuration_is_idempotent(queue: EnrollmentQueue, audit: AuditLog) -> None:
    entry = queue.add_approved_sync("ocpp", "CP07", ADMIN, fingerprint=FP_A, reason="config")
    assert entry.status == APPROVED and queue.is_trusted("ocpp", "CP07", FP_A)
    assert audit.list_sync(event_prefix=EVENT_ENROLLMENT)[-1].data["previous_status"] is None
    queue.add_approved_sync("ocpp", "CP07", ADMIN, fingerprint=FP_A)
    queue.add_approved_sync("ocpp", "CP07", ADMIN)
    assert len(audit.list_sync(event_prefix=EVENT_ENROLLMENT)) == 1, "re-applying the same config is no change"
    queue.add_approved_sync("ocpp", "CP07", ADMIN, fingerprint=FP_B)
    assert queue.is_trusted("ocpp", "CP07", FP_B) and not queue.is_trusted("ocpp", "CP07", FP_A)
    assert len(audit.list_sync(event_prefix=EVENT_ENROLLMENT)) == 2

    queue.request_sync("ocpp", "CP08")
    queue.reject_sync("ocpp", "CP08", ADMIN)
    assert queue.add_approved_sync("ocpp", "CP08", ADMIN).status == APPROVED


@pytest.mark.parametrize("identity", ["", "x" * 256, "CP\n01", "CP\x1b[2J", "tab\there"])
def test_bad_identities_are_refused(queue: EnrollmentQueue, identity: str) -> None:
    with pytest.raises(ValueError):
        queue.request_sync("ocpp", identity)
    assert queue.list_sync() == []


def test_other_bad_input_is_refused(queue: EnrollmentQueue) -> None:
    queue.request_sync("ocpp", "x" * 255)  # the longest allowed
    for kind in ("", "OCPP", "o" * 40, "oc pp"):
        with pytest.raises(ValueError):
            queue.request_sync(kind, "CP01")
    with pytest.raises(ValueError):
        queue.request_sync("ocpp", "CP01", info={"big": "x" * enrollment.MAX_INFO_CHARS})
    with pytest.raises(ValueError):
        queue.request_sync("ocpp", "CP01", info={"bad": object()})
    with pytest.raises(ValueError):
        queue.request_sync("ocpp", "CP01", fingerprint="  ")
    with pytest.raises(ValueError):
        queue.list_sync(status="maybe")
    assert not queue.is_trusted("ocpp", "CP01", "\x00not printable")


def test_list_filters(queue: EnrollmentQueue) -> None:
    queue.request_sync("ocpp", "CP01")
    queue.request_sync("eebus", "ski-1")
    queue.approve_sync("eebus", "ski-1", ADMIN)
    assert [e.identity for e in queue.list_sync(status=PENDING)] == ["CP01"]
    assert [e.identity for e in queue.list_sync(kind="eebus")] == ["ski-1"]
    assert queue.list_sync(status=APPROVED, kind="ocpp") == []
    assert queue.list_sync()[0].as_dict()["fingerprint_changed"] is False


def test_a_full_queue_refuses_new_identities_only(queue: EnrollmentQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enrollment, "MAX_PENDING", 2)
    queue.request_sync("ocpp", "CP01")
    queue.request_sync("ocpp", "CP02")
    with pytest.raises(EnrollmentQueueFull):
        queue.request_sync("ocpp", "CP03")
    assert queue.request_sync("ocpp", "CP01", now=T0).status == PENDING, "known devices are still seen"
    queue.approve_sync("ocpp", "CP01", ADMIN)
    assert queue.request_sync("ocpp", "CP03").created


async def test_async_api(queue: EnrollmentQueue, audit: AuditLog) -> None:
    entry = await queue.request("eebus", "ski-async", fingerprint=FP_A, address="192.0.2.3")
    assert entry.created and await queue.status("eebus", "ski-async") == PENDING
    await queue.approve("eebus", "ski-async", ADMIN)
    assert queue.is_trusted("eebus", "ski-async", FP_A)
    assert [e.identity for e in await queue.list(status=APPROVED)] == ["ski-async"]
    await queue.reject("eebus", "ski-async", ADMIN, reason="replaced")
    assert not queue.is_trusted("eebus", "ski-async", FP_A)
    await queue.add_approved("eebus", "ski-2", ADMIN)
    await queue.remove("eebus", "ski-2", ADMIN)
    assert await queue.get("eebus", "ski-2") is None
    assert (await audit.verify()).ok


async def test_a_decision_from_another_process_reaches_the_hot_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ampgate enroll approve`` beside a running gateway: the gateway's cache follows within the interval."""
    monkeypatch.setattr(enrollment, "REFRESH_INTERVAL_S", 0.0)
    gateway_storage, cli_storage = Storage(tmp_path).open(), Storage(tmp_path).open()
    try:
        running = EnrollmentQueue(gateway_storage, AuditLog(gateway_storage))
        cli = EnrollmentQueue(cli_storage, AuditLog(cli_storage))
        await running.request("ocpp", "CP01")
        assert not running.is_trusted("ocpp", "CP01")
        cli.approve_sync("ocpp", "CP01", ADMIN)
        for _ in range(100):
            if running.is_trusted("ocpp", "CP01"):
                break
            await asyncio.sleep(0.01)
        assert running.is_trusted("ocpp", "CP01")

        cli.reject_sync("ocpp", "CP01", ADMIN)
        await running.refresh()
        assert not running.is_trusted("ocpp", "CP01")
    finally:
        gateway_storage.close()
        cli_storage.close()
