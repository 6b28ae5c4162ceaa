"""Secrets at rest (DATA-001): AES-256-GCM tokens, the key file, blind indexes."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from gateway.security.vault import KEY_FILE, Vault, VaultError

KEY = bytes(range(32))


@pytest.fixture
def vault() -> Vault:
    return Vault(KEY)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPGATE_VAULT_KEY", raising=False)


def test_round_trip_and_fresh_nonce(vault: Vault) -> None:
    token = vault.encrypt("04A2B3C4D5E6F7", aad="ocpp.id_token")
    assert token.startswith("v1:")
    assert "04A2B3C4D5E6F7" not in token
    assert vault.decrypt_str(token, aad="ocpp.id_token") == "04A2B3C4D5E6F7"
    assert vault.decrypt(vault.encrypt(b"\x00\xff", aad="x"), aad="x") == b"\x00\xff"
    assert vault.encrypt("same", aad="a") != vault.encrypt("same", aad="a")


def test_tampered_token_is_refused(vault: Vault) -> None:
    token = vault.encrypt("secret", aad="ocpp.id_token")
    raw = bytearray(base64.b64decode(token[3:]))
    for index in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        changed = bytearray(raw)
        changed[index] ^= 0x01
        with pytest.raises(VaultError):
            vault.decrypt("v1:" + base64.b64encode(bytes(changed)).decode(), aad="ocpp.id_token")
    for bad in ("v2:" + token[3:], token[3:], "v1:not base64!", "v1:" + base64.b64encode(b"short").decode()):
        with pytest.raises(VaultError):
            vault.decrypt(bad, aad="ocpp.id_token")


def test_wrong_aad_or_key_is_refused(vault: Vault) -> None:
    token = vault.encrypt("secret", aad="ocpp.station_password:CP01")
    with pytest.raises(VaultError, match="wrong key, wrong purpose or tampered"):
        vault.decrypt(token, aad="ocpp.station_password:CP02")
    with pytest.raises(VaultError):
        Vault(bytes(32)).decrypt(token, aad="ocpp.station_password:CP01")


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(VaultError):
        Vault(b"short")
    assert "00010203" not in repr(Vault(KEY))


def test_blind_index_is_deterministic_keyed_and_per_purpose(vault: Vault) -> None:
    index = vault.blind_index("04A2B3C4", purpose="ocpp.id_token")
    assert index == vault.blind_index("04A2B3C4", purpose="ocpp.id_token")
    assert len(index) == 64
    assert index != vault.blind_index("04A2B3C5", purpose="ocpp.id_token")
    assert index != vault.blind_index("04A2B3C4", purpose="other")
    assert index != Vault(bytes(32)).blind_index("04A2B3C4", purpose="ocpp.id_token")


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Vault.from_data_dir(data_dir)
    path = data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE]  # no temporary file left behind
    token = first.encrypt("x", aad="t")
    assert Vault.from_data_dir(data_dir).decrypt_str(token, aad="t") == "x"


def test_refuses_a_group_or_world_readable_key_file(tmp_path: Path) -> None:
    Vault.from_data_dir(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(VaultError, match="readable by group or others"):
        Vault.from_data_dir(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o640)
    with pytest.raises(VaultError):
        Vault.from_data_dir(tmp_path)


def test_refuses_a_key_file_of_the_wrong_size_or_a_symlink(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"too short")
    os.close(fd)
    with pytest.raises(VaultError, match="exactly 32 bytes"):
        Vault.from_data_dir(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "real.key").write_bytes(KEY)
    (other / "real.key").chmod(0o600)
    (other / KEY_FILE).symlink_to(other / "real.key")
    with pytest.raises(VaultError, match="symbolic link"):
        Vault.from_data_dir(other)


def test_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPGATE_VAULT_KEY", base64.b64encode(KEY).decode())
    from_env = Vault.from_data_dir(tmp_path)
    assert not (tmp_path / KEY_FILE).exists()  # the environment wins; nothing is written
    assert Vault(KEY).decrypt_str(from_env.encrypt("v", aad="a"), aad="a") == "v"
    monkeypatch.setenv("CUSTOM_KEY", base64.b64encode(KEY).decode())
    assert Vault.from_data_dir(tmp_path, env="CUSTOM_KEY").blind_index("a", purpose="p") == \
        Vault(KEY).blind_index("a", purpose="p")
    for bad in ("not base64!", base64.b64encode(b"16 bytes only!!!").decode()):
        monkeypatch.setenv("AMPGATE_VAULT_KEY", bad)
        with pytest.raises(VaultError):
            Vault.from_data_dir(tmp_path)
