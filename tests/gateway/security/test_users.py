"""Accounts and the login rules of AUTH-005, and ``ampgate user``."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from gateway.commands import user as user_command
from gateway.context import Context, Role
from gateway.security import passwords, users
from gateway.security.audit import EVENT_LOCKOUT, EVENT_LOGIN_FAILED, EVENT_USER_CHANGED, AuditLog
from gateway.security.passwords import check_password
from gateway.security.users import (
    LOCKOUT_AFTER_FAILURES,
    LOCKOUT_S,
    REASON_BAD_CREDENTIALS,
    REASON_LOCKED,
    UnknownUser,
    UserError,
    UserExists,
    UserStore,
    WeakPassword,
)
from gateway.storage import Storage

PASSWORD = "Tr0ub4dor&3x"
OTHER = "correct-Horse-7"
T0 = 1_700_000_000.0


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**10)


@pytest.fixture
def store(storage: Storage, audit: AuditLog) -> UserStore:
    s = UserStore(storage, audit)
    s.add("admin", "admin", PASSWORD)
    s.add("alice", "operator", PASSWORD)
    return s


def events(audit: AuditLog, prefix: str) -> list[dict[str, object]]:
    return [r.data for r in audit.list_sync(limit=1000, event_prefix=prefix)]


def test_add_with_a_one_time_password(storage: Storage, audit: AuditLog) -> None:
    store = UserStore(storage, audit)
    otp = store.add("bob", "viewer")
    assert otp is not None and check_password(otp) == []
    bob = store.get("bob")
    assert bob is not None and bob.role is Role.VIEWER and bob.must_change
    result = store.authenticate("bob", otp)
    assert result.ok and result.must_change and result.role is Role.VIEWER
    assert store.add("carol", Role.ADMIN, PASSWORD) is None
    carol = store.get("carol")
    assert carol is not None and not carol.must_change
    # Only the hash is stored.
    hashes = [row[0] for row in storage.execute_sync("SELECT password_hash FROM users")]
    assert all(h.startswith("scrypt$") for h in hashes) and otp not in hashes and PASSWORD not in hashes


def test_add_refuses_bad_input(store: UserStore) -> None:
    with pytest.raises(UserExists):
        store.add("ALICE", "viewer")  # names are case-insensitive
    with pytest.raises(WeakPassword) as err:
        store.add("dave", "viewer", "Password1!")
    assert err.value.problems == ["is a known default or common password"]
    with pytest.raises(WeakPassword) as err:
        store.add("dave", "viewer", "xDave-92!zz")
    assert "must not contain the user name" in err.value.problems
    for name in ("", "-x", "a b", "x" * 65, "évé"):
        with pytest.raises(UserError, match="invalid user name"):
            store.add(name, "viewer")
    for role in ("root", "system", Role.SYSTEM):
        with pytest.raises(UserError):
            store.add("dave", role)
    assert store.get("dave") is None


def test_five_failures_do_not_lock_the_sixth_does(store: UserStore, audit: AuditLog) -> None:
    for attempt in range(1, LOCKOUT_AFTER_FAILURES):
        result = store.authenticate("alice", "wrong", now=T0 + attempt)
        assert not result.ok and result.reason == REASON_BAD_CREDENTIALS
    alice = store.get("alice")
    assert alice is not None and alice.failed_count == 5 and not alice.is_locked(T0 + 5)

    sixth = store.authenticate("alice", "wrong", now=T0 + 6)
    assert not sixth.ok and sixth.reason == REASON_LOCKED and sixth.locked_until == T0 + 6 + LOCKOUT_S
    # Locked: the right password fails too, until the period ends by itself.
    assert store.authenticate("alice", PASSWORD, now=T0 + 7).reason == REASON_LOCKED
    assert store.authenticate("alice", PASSWORD, now=T0 + 6 + LOCKOUT_S - 1).reason == REASON_LOCKED
    after = store.authenticate("alice", PASSWORD, now=T0 + 6 + LOCKOUT_S)
    assert after.ok and after.role is Role.OPERATOR
    alice = store.get("alice")
    assert alice is not None and alice.failed_count == 0 and alice.locked_until is None

    failures = events(audit, EVENT_LOGIN_FAILED)
    assert len(failures) == 8
    assert [f["reason"] for f in failures].count("account locked") == 2
    assert failures[5] == {"user": "alice", "address": None, "reason": "wrong password", "failures": 6}
    lockouts = events(audit, EVENT_LOCKOUT)
    assert lockouts == [{"user": "alice", "address": None, "failures": 6, "locked_until": T0 + 6 + LOCKOUT_S}]
    assert audit.verify_sync().ok


def test_success_resets_the_count(store: UserStore) -> None:
    for attempt in range(5):
        store.authenticate("alice", "wrong", now=T0 + attempt)
    assert store.authenticate("alice", PASSWORD, now=T0 + 10).ok
    for attempt in range(5):
        assert store.authenticate("alice", "wrong", now=T0 + 20 + attempt).reason == REASON_BAD_CREDENTIALS
    assert store.authenticate("alice", PASSWORD, now=T0 + 30).ok


def test_a_lock_that_ended_starts_a_fresh_count(store: UserStore) -> None:
    for attempt in range(6):
        store.authenticate("alice", "wrong", now=T0 + attempt)
    later = T0 + 5 + LOCKOUT_S
    assert store.authenticate("alice", "wrong", now=later).reason == REASON_BAD_CREDENTIALS
    alice = store.get("alice")
    assert alice is not None and alice.failed_count == 1


def test_unknown_user_costs_one_scrypt_and_is_audited(
    store: UserStore, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = users.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr(users, "verify_password", counting)
    result = store.authenticate("mallory", PASSWORD, address="192.168.1.66")
    assert not result.ok and result.reason == REASON_BAD_CREDENTIALS and result.role is None
    assert len(calls) == 1 and calls[0].startswith(f"scrypt${2**10}$")
    store.authenticate("alice", "wrong")
    assert len(calls) == 2
    record = audit.list_sync(limit=2, event_prefix=EVENT_LOGIN_FAILED)[0]
    assert record.data == {"user": "mallory", "address": "192.168.1.66", "reason": "unknown user"}
    assert record.actor == "login:mallory@192.168.1.66"


def test_audit_records_for_changes_without_secrets(store: UserStore, audit: AuditLog) -> None:
    ctx = Context(origin="cli", principal="root", role=Role.ADMIN)
    store.set_password("alice", OTHER, must_change=True, context=ctx)
    store.delete("alice", context=ctx)
    changes = audit.list_sync(limit=10, event_prefix=EVENT_USER_CHANGED)
    assert [r.data["action"] for r in changes] == ["add", "add", "password", "delete"]
    assert changes[2].actor == "cli:root" and changes[2].data == {
        "action": "password", "user": "alice", "must_change": True}
    dump = json.dumps([r.as_dict() for r in audit.list_sync(limit=1000)])
    assert PASSWORD not in dump and OTHER not in dump
    assert audit.verify_sync().ok


def test_set_password(store: UserStore) -> None:
    with pytest.raises(WeakPassword):
        store.set_password("alice", "short")
    with pytest.raises(WeakPassword, match="differ from the current"):
        store.set_password("alice", PASSWORD)
    with pytest.raises(UnknownUser):
        store.set_password("nobody", OTHER)
    for attempt in range(6):
        store.authenticate("alice", "wrong", now=T0 + attempt)
    store.set_password("alice", OTHER, must_change=True)  # an administrator's reset also unlocks
    assert not store.authenticate("alice", PASSWORD, now=T0 + 10).ok
    result = store.authenticate("alice", OTHER, now=T0 + 11)
    assert result.ok and result.must_change


def test_delete(store: UserStore) -> None:
    with pytest.raises(UnknownUser):
        store.delete("nobody")
    with pytest.raises(UserError, match="last administrator"):
        store.delete("admin")
    store.delete("alice")
    assert [u.username for u in store.list()] == ["admin"]


def test_login_upgrades_an_old_hash(store: UserStore, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**11)
    assert store.authenticate("alice", PASSWORD).ok
    stored = storage.execute_sync("SELECT password_hash FROM users WHERE username = 'alice'")[0][0]
    assert stored.startswith(f"scrypt${2**11}$")
    assert store.authenticate("alice", PASSWORD).ok


async def test_async_wrappers(store: UserStore) -> None:
    assert (await store.async_authenticate("alice", PASSWORD, address="127.0.0.1")).ok
    user = await store.async_get("alice")
    assert user is not None and user.role is Role.OPERATOR
    await store.async_set_password("alice", OTHER)
    assert (await store.async_authenticate("alice", OTHER)).ok
    with pytest.raises(WeakPassword):
        await store.async_set_password("alice", "weak")


# -- ampgate user -------------------------------------------------------------------------------------------


def cli(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    parser.add_argument("--config")
    sub = parser.add_subparsers()
    user_command.register(sub)
    args = parser.parse_args(["--data-dir", str(tmp_path), "user", *argv])
    return int(args.func(args))


def open_store(tmp_path: Path) -> tuple[Storage, UserStore]:
    storage = Storage(tmp_path).open()
    return storage, UserStore(storage, AuditLog(storage))


def test_cli_add_prints_the_one_time_password_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "add", "alice", "--role", "admin") == 0
    out = capsys.readouterr().out
    otp = out.strip().splitlines()[-1].strip()
    assert check_password(otp) == []
    storage, store = open_store(tmp_path)
    try:
        result = store.authenticate("alice", otp)
        assert result.ok and result.must_change and result.role is Role.ADMIN
        added = AuditLog(storage).list_sync(event_prefix=EVENT_USER_CHANGED)[0]
        assert added.actor.startswith("cli")
    finally:
        storage.close()
    assert cli(tmp_path, "add", "alice", "--role", "viewer") == 1
    assert "already exists" in capsys.readouterr().err


def test_cli_passwd_from_stdin_generate_and_tty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(tmp_path, "add", "alice", "--role", "operator") == 0
    capsys.readouterr()

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli(tmp_path, "passwd", "alice", "--stdin") == 0
    storage, store = open_store(tmp_path)
    try:
        result = store.authenticate("alice", PASSWORD)
        assert result.ok and not result.must_change
    finally:
        storage.close()

    monkeypatch.setattr("sys.stdin", io.StringIO("weak\n"))
    assert cli(tmp_path, "passwd", "alice", "--stdin") == 1
    assert "must be at least 8 characters long" in capsys.readouterr().err

    assert cli(tmp_path, "passwd", "alice", "--generate") == 0
    otp = capsys.readouterr().out.strip().splitlines()[-1].strip()
    storage, store = open_store(tmp_path)
    try:
        result = store.authenticate("alice", otp)
        assert result.ok and result.must_change
    finally:
        storage.close()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    typed = iter([OTHER, OTHER, OTHER, "different-Pw-1"])
    monkeypatch.setattr("sys.stdin", Tty())
    monkeypatch.setattr(user_command.getpass, "getpass", lambda prompt="": next(typed))
    assert cli(tmp_path, "passwd", "alice") == 0
    assert cli(tmp_path, "passwd", "alice") == 1
    assert "differ" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal, no --stdin
    assert cli(tmp_path, "passwd", "alice") == 1
    assert "--stdin or --generate" in capsys.readouterr().err
    assert cli(tmp_path, "passwd", "nobody", "--generate") == 1


def test_cli_list_and_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "list") == 0
    assert "No users" in capsys.readouterr().out
    assert cli(tmp_path, "add", "admin", "--role", "admin") == 0
    assert cli(tmp_path, "add", "viewer1", "--role", "viewer") == 0
    capsys.readouterr()
    assert cli(tmp_path, "list") == 0
    out = capsys.readouterr().out
    assert "admin" in out and "viewer1" in out and "must change password" in out
    assert cli(tmp_path, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["username"], u["role"]) for u in listed] == [("admin", "admin"), ("viewer1", "viewer")]
    assert cli(tmp_path, "delete", "viewer1") == 0
    assert cli(tmp_path, "delete", "viewer1") == 1
    assert cli(tmp_path, "delete", "admin") == 1
    assert "last administrator" in capsys.readouterr().err
