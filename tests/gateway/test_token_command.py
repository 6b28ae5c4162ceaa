"""``ampgate token add / revoke / list``: values read from stdin (never argv), stored encrypted, audited."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from gateway.commands import token
from gateway.security.audit import AuditLog
from gateway.security.idtokens import IdTokenStore, TokenStatus
from gateway.security.vault import Vault
from gateway.storage import Storage


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str,
        stdin: str = "") -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(tmp_path / "data"))
    token.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["token", *argv])
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def store(tmp_path: Path) -> tuple[Storage, IdTokenStore]:
    storage = Storage(tmp_path / "data").open()
    return storage, IdTokenStore(storage, Vault.from_data_dir(tmp_path / "data"), AuditLog(storage))


def test_add_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(tmp_path, monkeypatch, capsys, "add", "--label", "Anna", "--stdin", stdin="04AABBCC\n")
    assert code == 0 and "added" in out and "04AABBCC" not in out
    code, out, _ = run(tmp_path, monkeypatch, capsys, "list", "--json")
    (entry,) = json.loads(out)
    assert entry["label"] == "Anna" and entry["status"] == "accepted" and "04AABBCC" not in out
    code, _, err = run(tmp_path, monkeypatch, capsys, "add", "--stdin", stdin="04aabbcc\n")
    assert code == 1 and "already" in err
    code, out, _ = run(tmp_path, monkeypatch, capsys, "revoke", "--stdin", stdin="04aabbcc\n")
    assert code == 0 and "revoked" in out
    storage, tokens = store(tmp_path)
    try:
        assert tokens.check_sync("04AABBCC") is TokenStatus.BLOCKED
        events = [r.event for r in tokens.audit.list_sync()]
        assert events == ["idtoken.added", "idtoken.revoked"]
        assert all(r.actor.startswith("cli") for r in tokens.audit.list_sync())
    finally:
        storage.close()


def test_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, monkeypatch, capsys, "add", "--stdin", stdin="\n")[0] == 1
    assert run(tmp_path, monkeypatch, capsys, "revoke", "--id", "99")[0] == 1
    # no terminal and no --stdin: refuse rather than read a token from a pipe unasked
    assert run(tmp_path, monkeypatch, capsys, "add")[0] == 1
    code, out, _ = run(tmp_path, monkeypatch, capsys, "list")
    assert code == 0 and "No id tokens" in out
