"""The pure account rules: secrets and hashes, CSRF tokens, session expiry, throttles, redirects, origins."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from gateway.context import Role
from plugins.web.auth import (
    AuditThrottle,
    LoginThrottle,
    SessionRecord,
    TokenRecord,
    csrf_ok,
    csrf_token,
    digest,
    login_csrf_ok,
    login_csrf_token,
    new_api_token,
    new_session_secret,
    parse_bearer,
    safe_next,
    same_origin,
)
from plugins.web.const import SESSION_ABSOLUTE_S, SESSION_IDLE_TIMEOUT_S


def test_secrets_are_long_random_and_stored_as_sha256() -> None:
    a, b = new_session_secret(), new_session_secret()
    assert a != b and len(a) >= 43  # 32 bytes, URL-safe base64
    token = new_api_token()
    assert token.startswith("agt_") and len(token) >= 47
    assert digest(a) == hashlib.sha256(a.encode()).hexdigest() and a not in digest(a)


def test_csrf_token_is_bound_to_the_session() -> None:
    one, two = new_session_secret(), new_session_secret()
    assert csrf_ok(one, csrf_token(one))
    assert not csrf_ok(one, csrf_token(two))
    assert not csrf_ok(one, None) and not csrf_ok(one, "") and not csrf_ok(one, "x" * 64)
    assert csrf_token(one) not in one and one not in csrf_token(one)


@given(st.text(max_size=200))
def test_csrf_check_never_raises(presented: str) -> None:
    """Contract: any presented value (also non-ASCII, surrogates) is a clean False."""
    assert csrf_ok("secret", presented) is (presented == csrf_token("secret"))


def test_login_csrf() -> None:
    key = b"k" * 32
    token = login_csrf_token(key, "cookie")
    assert login_csrf_ok(key, "cookie", token)
    assert not login_csrf_ok(key, "other", token)
    assert not login_csrf_ok(b"x" * 32, "cookie", token)
    assert not login_csrf_ok(key, None, token) and not login_csrf_ok(key, "cookie", None)


def test_session_idle_and_absolute_expiry() -> None:
    record = SessionRecord(id_hash="h", username="u", role=Role.VIEWER, created=0.0, last_seen=0.0)
    assert not record.expired(SESSION_IDLE_TIMEOUT_S - 1)
    assert record.expired(SESSION_IDLE_TIMEOUT_S)  # 30 min idle: over (AUTH-005)
    record.last_seen = SESSION_ABSOLUTE_S - 10
    assert record.expired(SESSION_ABSOLUTE_S)  # busy, but past the absolute lifetime
    assert SESSION_IDLE_TIMEOUT_S == 1800


def test_token_role_is_capped_by_its_account() -> None:
    token = TokenRecord(id=1, name="t", token_hash="h", scope="admin", created_by="u", created=0.0)
    assert token.role is Role.ADMIN
    token.cap = Role.OPERATOR
    assert token.role is Role.OPERATOR
    assert TokenRecord(id=2, name="t", token_hash="h", scope="read", created_by="u", created=0.0).role is Role.VIEWER


def test_login_throttle_counts_failures_in_a_window() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60, max_addresses=2)
    for t in range(3):
        assert throttle.retry_after("a", t) == 0
        throttle.failed("a", t)
    assert 57 <= throttle.retry_after("a", 3) <= 60
    assert throttle.retry_after("b", 3) == 0  # per address
    assert throttle.retry_after("a", 60.5) == 0  # the oldest failure aged out
    throttle.failed("b", 100)
    throttle.failed("c", 100)
    assert len(throttle) <= 2  # bounded memory


def test_audit_throttle_lets_one_through_per_interval() -> None:
    throttle = AuditThrottle(interval_s=60)
    assert throttle.allow("k", 0) == 0
    assert throttle.allow("k", 1) is None
    assert throttle.allow("k", 2) is None
    assert throttle.allow("other", 2) == 0
    assert throttle.allow("k", 61) == 2  # the two suppressed since


def test_bearer_parsing() -> None:
    assert parse_bearer("Bearer abc") == "abc"
    assert parse_bearer("bearer  abc ") == "abc"
    assert parse_bearer("Basic abc") is None
    assert parse_bearer("Bearer") is None and parse_bearer(None) is None and parse_bearer("") is None


def test_safe_next_stays_on_site() -> None:
    assert safe_next("/users?x=1") == "/users?x=1"
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)", "", None,
                "users", "/\x00x", "/a\nLocation: x"):
        assert safe_next(bad) == "/", bad


@given(st.text(max_size=100))
def test_safe_next_never_leaves_the_site(target: str) -> None:
    """Contract: the result is always a path on this site."""
    result = safe_next(target)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result


def test_same_origin() -> None:
    assert same_origin(None, "https", "127.0.0.1:8443")
    assert same_origin("https://127.0.0.1:8443", "https", "127.0.0.1:8443")
    assert not same_origin("https://evil.example", "https", "127.0.0.1:8443")
    assert not same_origin("http://127.0.0.1:8443", "https", "127.0.0.1:8443")
    assert same_origin("null", "https", "127.0.0.1:8443")  # no-referrer makes browsers send null
    assert same_origin("null", "https", "127.0.0.1:8443", "same-origin")
    assert not same_origin("null", "https", "127.0.0.1:8443", "cross-site")
    assert not same_origin(None, "https", "127.0.0.1:8443", "same-site")
