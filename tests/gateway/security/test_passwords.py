"""Password hashing and the strength rules (AUTH-002, AUTH-005, AUTH-006)."""

from __future__ import annotations

import base64

import pytest

from gateway.security import passwords
from gateway.security.passwords import (
    PIN_REPEAT,
    PIN_RUN,
    check_password,
    check_pin,
    generate_password,
    generate_secret_bytes,
    hash_password,
    is_common,
    needs_rehash,
    verify_password,
)

GOOD = "Tr0ub4dor&3x"


@pytest.fixture
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**10)


def test_default_hash_format_and_round_trip() -> None:
    stored = hash_password(GOOD)
    prefix, n, r, p, salt, digest = stored.split("$")
    assert (prefix, n, r, p) == ("scrypt", "32768", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert verify_password(GOOD, stored)
    assert not verify_password(GOOD + "!", stored)
    assert not needs_rehash(stored)


@pytest.mark.usefixtures("fast_scrypt")
def test_salted_and_parameters_travel_with_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = hash_password(GOOD), hash_password(GOOD)
    assert first != second  # random salt
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**11)
    assert verify_password(GOOD, first)  # old parameters still verify
    assert needs_rehash(first)
    assert not needs_rehash(hash_password(GOOD))


@pytest.mark.usefixtures("fast_scrypt")
def test_unicode_is_normalised() -> None:
    composed, decomposed = "Caf\u00e9-Ab1!", "Cafe\u0301-Ab1!"
    assert verify_password(decomposed, hash_password(composed))


@pytest.mark.parametrize("stored", [
    "", "plain", "scrypt$1024$8$1$!!$!!", "bcrypt$1$2$3$4$5", "scrypt$1000$8$1$AAAA$" + "A" * 44,
    "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,  # absurd cost from a tampered database
])
def test_malformed_hashes_never_verify(stored: str) -> None:
    assert verify_password("anything", stored) is False
    assert needs_rehash(stored)


@pytest.mark.parametrize(("password", "problem"), [
    ("Ab1!", "must be at least 8 characters long"),
    ("Ab1!" * 17, "must be at most 64 characters long"),
    ("ABCDEFG1!", "must contain a lower-case letter"),
    ("abcdefg1!", "must contain an upper-case letter"),
    ("Abcdefgh!", "must contain a digit"),
    ("Abcdefgh1", "must contain a special character (not a letter or digit)"),
    ("Password1!", "is a known default or common password"),
    ("Abc\x00defg1!", "must not contain control characters"),
])
def test_weak_passwords_are_refused_with_the_right_problem(password: str, problem: str) -> None:
    assert problem in check_password(password)


def test_password_must_not_contain_the_user_name() -> None:
    assert "must not contain the user name" in check_password("xAlice-92!z", username="alice")
    assert check_password("xAlice-92!z", username="bob") == []
    assert check_password(GOOD, username="al") == []  # too short a name to look for


def test_a_good_password_passes() -> None:
    assert check_password(GOOD) == []
    assert check_password("correct-Horse-battery-7") == []


@pytest.mark.parametrize("password", [
    "admin", "ADMIN", "password", "123456", "12345678", "qwerty", "changeme", "default", "root", "letmein",
    "welcome", "Password1!", "P@ssw0rd", "!Admin2024", "Qwerty123!", "Changeme123!", "Letmein!2",
    "raspberry", "Welcome1",
])
def test_common_and_default_passwords_are_recognised(password: str) -> None:
    assert is_common(password)


@pytest.mark.parametrize("password", [GOOD, "Sa#4829173", "Ab#8273645", "correct-Horse-7"])
def test_uncommon_passwords_are_not_flagged(password: str) -> None:
    assert not is_common(password)


def test_the_shipped_list_is_a_few_hundred_words() -> None:
    assert len(passwords._common_passwords()) >= 300


@pytest.mark.parametrize(("pin", "problem"), [
    ("1234567", "must have at least 8 digits"),
    ("12a45678", "must contain digits only"),
    ("", "must contain digits only"),
    ("12345678", PIN_RUN),
    ("87654321", PIN_RUN),
    ("90123456", PIN_RUN),
    ("11223344", PIN_RUN),
    ("11112222", PIN_REPEAT),
    ("12121212", PIN_REPEAT),
    ("11111111", PIN_REPEAT),
    ("12341234", PIN_REPEAT),
])
def test_weak_pins_are_refused(pin: str, problem: str) -> None:
    assert problem in check_pin(pin)


@pytest.mark.parametrize("pin", ["27182818", "4928371650", "90417325"])
def test_good_pins_pass(pin: str) -> None:
    assert check_pin(pin) == []


def test_generated_passwords_pass_the_policy() -> None:
    seen = {generate_password() for _ in range(50)}
    assert len(seen) == 50
    for password in seen:
        assert len(password) == 20 and check_password(password) == []
    assert check_password(generate_password(8)) == []
    with pytest.raises(ValueError):
        generate_password(7)


def test_generate_secret_bytes() -> None:
    assert len(generate_secret_bytes(16)) == 16
    assert generate_secret_bytes() != generate_secret_bytes()
