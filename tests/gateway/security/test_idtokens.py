"""The id-token list: encrypted at rest, found by blind index, revocation effective at once, audited."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.security.audit import AuditLog
from gateway.security.idtokens import IdTokenError, IdTokenStore, TokenStatus
from gateway.security.vault import Vault
from gateway.storage import Storage


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    storage = Storage(tmp_path).open()
    yield IdTokenStore(storage, Vault(b"k" * 32), AuditLog(storage))
    storage.close()


def test_add_check_revoke(store: IdTokenStore) -> None:
    entry = store.add_sync("04a1b2c3d4", label="Anna", kind="rfid")
    assert entry.hint == "…D4" and entry.status(time.time()) is TokenStatus.ACCEPTED
    assert store.check_sync("04A1B2C3D4") is TokenStatus.ACCEPTED  # case-insensitive (CiString)
    assert store.check_sync(" 04a1b2c3d4 ") is TokenStatus.ACCEPTED
    assert store.check_sync("nope") is TokenStatus.INVALID
    assert store.revoke_sync("04A1B2C3D4") is True
    assert store.check_sync("04a1b2c3d4") is TokenStatus.BLOCKED
    assert store.revoke_sync(token_id=entry.id) is False


def test_reading_a_revocation_from_another_process(tmp_path: Path) -> None:
    # Two stores on one database stand for the gateway and `ampgate token revoke`: no cache in between.
    a = Storage(tmp_path).open()
    b = Storage(tmp_path).open()
    try:
        gateway = IdTokenStore(a, Vault(b"k" * 32), AuditLog(a))
        cli = IdTokenStore(b, Vault(b"k" * 32), AuditLog(b))
        gateway.add_sync("CARD1")
        assert gateway.check_sync("CARD1") is TokenStatus.ACCEPTED
        cli.revoke_sync("CARD1")
        assert gateway.check_sync("CARD1") is TokenStatus.BLOCKED
    finally:
        a.close()
        b.close()


def test_stored_encrypted_and_audited_without_value(store: IdTokenStore) -> None:
    store.add_sync("SECRETBADGE42", label="van")
    rows = store.storage.execute_sync("SELECT * FROM id_tokens")
    assert "SECRETBADGE42" not in str([dict(r) for r in rows])
    records = store.audit.list_sync()
    assert [r.event for r in records] == ["idtoken.added"]
    assert "SECRETBADGE42" not in str(records[0].data) and records[0].data["label"] == "van"


def test_expiry_duplicates_and_reactivation(store: IdTokenStore) -> None:
    store.add_sync("OLD", expires_at=time.time() - 1)
    assert store.check_sync("OLD") is TokenStatus.EXPIRED
    with pytest.raises(IdTokenError):
        store.add_sync("old")
    store.revoke_sync("OLD")
    again = store.add_sync("OLD", label="back")
    assert again.revoked_at is None and store.check_sync("OLD") is TokenStatus.ACCEPTED
    assert len(store.list_sync()) == 1


@pytest.mark.parametrize("bad", ["", "   ", "x" * 37, "a\nb"])
def test_bad_tokens_refused(store: IdTokenStore, bad: str) -> None:
    with pytest.raises(IdTokenError):
        store.add_sync(bad)
    assert store.check_sync(bad) is TokenStatus.INVALID


def test_unknown_kind_and_unknown_revoke(store: IdTokenStore) -> None:
    with pytest.raises(IdTokenError):
        store.add_sync("A1", kind="magic")
    with pytest.raises(IdTokenError):
        store.revoke_sync("NOTTHERE")


def test_other_vault_key_cannot_read_values(tmp_path: Path) -> None:
    storage = Storage(tmp_path).open()
    try:
        IdTokenStore(storage, Vault(b"k" * 32), AuditLog(storage)).add_sync("CARD")
        other = IdTokenStore(storage, Vault(b"z" * 32), AuditLog(storage))
        assert other.list_sync()[0].hint == "?"
        assert other.check_sync("CARD") is TokenStatus.INVALID  # another key: another blind index
    finally:
        storage.close()
