"""The verdict before the upgrade (sans-IO): every refusal of auth.decide, the lock-out, the enqueue limit."""

from __future__ import annotations

import base64

import pytest

from plugins.ocpp import auth
from plugins.ocpp.auth import Handshake, PeerCert, Reason
from plugins.ocpp.stations import StationConfig, parse_identity, slug

PW = b"0123456789abcdefXY"
STATIONS = {
    "CP1": StationConfig(identity="CP1", slug="cp1", profile=2, password=PW),
    "CP3": StationConfig(identity="CP3", slug="cp3", profile=3, fingerprint="ab" * 32),
    "CP3B": StationConfig(identity="CP3B", slug="cp3b", profile=3),
}


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


def decide(path: str = "/ocpp/CP1", authorization: tuple[str, ...] = (basic(b"CP1", PW),),
           peer: PeerCert | None = None, trusted: bool = False, **kw: object) -> auth.Verdict:
    hs = Handshake(path=path, authorization=authorization, address="192.0.2.5", tls=True, peer=peer)
    return auth.decide(hs, prefix="/ocpp", stations=STATIONS, is_trusted=lambda i, f: trusted,
                       enrolled_defaults=lambda i, f: StationConfig.enrolled(i, {}, f), **kw)  # type: ignore[arg-type]


def test_good_password_accepted() -> None:
    verdict = decide()
    assert verdict.accepted and verdict.station is STATIONS["CP1"] and verdict.status == 101


@pytest.mark.parametrize(("authorization", "reason"), [
    ((), Reason.NO_CREDENTIALS),
    (("Bearer abc",), Reason.MALFORMED_CREDENTIALS),
    (("Basic !!!notbase64",), Reason.MALFORMED_CREDENTIALS),
    (("Basic " + base64.b64encode(b"CP1").decode(),), Reason.MALFORMED_CREDENTIALS),  # no colon
    ((basic(b"CP1", PW), basic(b"CP1", PW)), Reason.MALFORMED_CREDENTIALS),  # two headers
    ((basic(b"CP2", PW),), Reason.USERNAME_MISMATCH),
    ((basic(b"CP1", PW + b"x"),), Reason.BAD_PASSWORD),
    ((basic(b"CP1", PW[:-1]),), Reason.BAD_PASSWORD),
    ((basic(b"CP1", b""),), Reason.BAD_PASSWORD),
])
def test_password_refusals_are_401(authorization: tuple[str, ...], reason: Reason) -> None:
    verdict = decide(authorization=authorization)
    assert verdict.reason is reason and verdict.status == 401 and not verdict.enqueue


def test_password_with_colon_and_binary_bytes() -> None:
    # 1.6 §6.2.2: the AuthorizationKey is bytes; split at the FIRST colon only.
    stations = {"CPX": StationConfig(identity="CPX", slug="cpx", profile=2, password=b"\x00\xff:ab" * 4)}
    hs = Handshake(path="/ocpp/CPX", authorization=(basic(b"CPX", b"\x00\xff:ab" * 4),), address="a", tls=True)
    assert auth.decide(hs, prefix="/ocpp", stations=stations, is_trusted=lambda i, f: False,
                       enrolled_defaults=lambda i, f: StationConfig.enrolled(i, {}, f)).accepted


@pytest.mark.parametrize("path", [
    "/ocpp/", "/ocpp", "/other/CP1", "/ocpp/CP1/extra", "/ocpp/CP1?x=1", "/ocpp/CP%2F1", "/ocpp/..",
    "/ocpp/CP%00", "/ocpp/" + "A" * 49, "/ocpp/CP:1", "/ocpp/%C3%A9", "/ocpp/CP%252F1", "/ocpp/%ZZ",
])
def test_bad_paths_are_404(path: str) -> None:
    assert decide(path=path).reason is Reason.BAD_PATH and decide(path=path).status == 404


def test_percent_decoded_once() -> None:
    assert decide(path="/ocpp/C%50%31").accepted  # %50%31 = "P1"


def test_unknown_identity_is_401_and_enqueued() -> None:
    verdict = decide(path="/ocpp/CP9", authorization=(basic(b"CP9", PW),))
    assert verdict.reason is Reason.UNKNOWN_IDENTITY and verdict.status == 401 and verdict.enqueue
    # the same 401 as a wrong password: the answer does not tell which identities exist
    assert verdict.status == decide(authorization=(basic(b"CP1", b"wrong"),)).status


def test_profile3_without_certificate_is_a_downgrade() -> None:
    verdict = decide(path="/ocpp/CP3", authorization=(basic(b"CP3", PW),))
    assert verdict.reason is Reason.LOWER_PROFILE and verdict.status == 403 and verdict.security_event


def test_profile3_certificate_must_name_the_identity_and_match_the_pin() -> None:
    other = PeerCert(common_name="CP1", fingerprint="ab" * 32)
    assert decide(path="/ocpp/CP3", authorization=(), peer=other).reason is Reason.CERTIFICATE_MISMATCH
    wrong_pin = PeerCert(common_name="CP3", fingerprint="cd" * 32)
    assert decide(path="/ocpp/CP3", authorization=(), peer=wrong_pin).reason is Reason.CERTIFICATE_PIN
    assert decide(path="/ocpp/CP3", authorization=(), peer=PeerCert(common_name="CP3", fingerprint="AB" * 32)).accepted
    assert decide(path="/ocpp/CP3B", authorization=(), peer=PeerCert(common_name="CP3B", fingerprint="ee")).accepted


def test_password_station_presenting_another_stations_certificate() -> None:
    verdict = decide(peer=PeerCert(common_name="CP3", fingerprint="ab"))
    assert verdict.reason is Reason.CERTIFICATE_MISMATCH and verdict.status == 403


def test_unconfigured_identity_with_certificate_needs_approval() -> None:
    peer = PeerCert(common_name="NEW1", fingerprint="12" * 32)
    refused = decide(path="/ocpp/NEW1", authorization=(), peer=peer)
    assert refused.reason is Reason.UNKNOWN_IDENTITY and refused.enqueue
    approved = decide(path="/ocpp/NEW1", authorization=(), peer=peer, trusted=True)
    assert approved.accepted and approved.station is not None and not approved.station.configured
    assert approved.station.profile == 3
    assert decide(path="/ocpp/NEW1", authorization=(), peer=peer, auto_approve=True).accepted
    # approved, but arriving with a password only: we know no password for it
    assert decide(path="/ocpp/NEW1", authorization=(basic(b"NEW1", PW),), trusted=True).reason is (
        Reason.NOT_CONFIGURED)


def test_locked_out_is_refused_unchecked() -> None:
    assert decide(locked_out=True).reason is Reason.LOCKED_OUT


def test_failure_tracker_locks_after_limit_and_forgets() -> None:
    tracker = auth.FailureTracker(limit=3, window_s=60, lockout_s=100, max_entries=2)
    assert not tracker.failure("CP1", "a", 0) and not tracker.failure("CP1", "a", 1)
    assert tracker.failure("CP1", "a", 2)  # third failure starts the lock-out: one security event
    assert tracker.locked("CP1", "a", 50) and not tracker.locked("CP1", "b", 50)
    assert not tracker.locked("CP1", "a", 103)
    tracker.failure("X", "a", 0)
    tracker.failure("Y", "a", 0)
    assert len(tracker._entries) == 2  # bounded


def test_failures_outside_the_window_do_not_add_up() -> None:
    tracker = auth.FailureTracker(limit=3, window_s=10)
    assert not any(tracker.failure("CP1", "a", t * 20.0) for t in range(10))


def test_enrollment_limiter() -> None:
    limiter = auth.EnrollmentLimiter(limit=2, window_s=10)
    assert limiter.allow("a", 0) and limiter.allow("a", 1) and not limiter.allow("a", 2)
    assert limiter.allow("b", 2) and limiter.allow("a", 12)


def test_identity_rules() -> None:
    assert parse_identity("CP-001") == "CP-001"
    assert parse_identity("%41") == "A"
    assert parse_identity("a b") is None and parse_identity("") is None
    assert slug("CP-001") == "cp_001" and slug("***") == "station"
