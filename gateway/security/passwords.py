"""Password hashing and the strength rules for passwords and PINs.

Contract:
- Passwords are stored only as scrypt hashes (policy: DATA-001) in the text format
  ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``; the parameters travel with each hash, so raising them later
  only needs ``needs_rehash()`` and a new hash at the next successful login.
- ``verify_password`` never raises: a malformed or absurd stored hash simply does not verify.
- ``check_password`` / ``check_pin`` return the problems in words (empty list = acceptable) so the CLI, the
  web UI and the policy layer (AUTH-002, AUTH-005, AUTH-006) all show the same sentences.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import itertools
import re
import secrets
import string
import unicodedata
from importlib import resources

# scrypt cost. n=2**15, r=8, p=1 is the interactive-login setting of the scrypt paper and of OWASP's password
# storage cheat sheet (about 32 MiB and 50-100 ms on a small ARM board). Module globals read at call time:
# tests lower SCRYPT_N through monkeypatch to stay fast.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# A stored hash asking for more than this is refused rather than computed: a tampered database must not be
# able to make every login allocate gigabytes.
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16

# policy: AUTH-005 (the station vendors' account rules: 8 to 64 characters, four character classes).
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 64
# policy: AUTH-006
MIN_PIN_DIGITS = 8
# A user name shorter than this is not looked for inside the password: "a" or "jo" would refuse half of all
# passwords without making any of them harder to guess.
MIN_USERNAME_CHECK = 3

# Special characters used by generate_password: printable, no quotes, backslash or space, so a generated
# password can be pasted into a shell, a YAML file or a web form unchanged.
GENERATED_SPECIALS = "-_.!@#%+=:?"
DEFAULT_GENERATED_LENGTH = 20

# Shortest undecorated form looked up in the common list (see is_common).
MIN_UNDECORATED = 4

_PREFIX = "scrypt"
_COMMON_FILE = "common_passwords.txt"


def _maxmem(n: int, r: int, p: int) -> int:
    # OpenSSL needs 128*r*(n+2) bytes for V plus 128*r*p for B; hashlib's default cap (32 MiB) is just
    # below what n=2**15, r=8 needs, hence an explicit limit with 1 MiB to spare.
    return 128 * r * (n + 2 + p) + (1 << 20)


def _normalise(password: str) -> bytes:
    # NFC: the same password typed on systems that compose accents differently must give the same hash.
    return unicodedata.normalize("NFC", password).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(_normalise(password), salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r, p), dklen=dklen)


def hash_password(password: str) -> str:
    """A new scrypt hash of ``password`` with a fresh random salt and the current parameters."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    if not (1 < n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= MAX_SCRYPT_R and 0 < p <= MAX_SCRYPT_P):
        return None
    if not salt or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash ``stored``; False (never an exception) for a malformed hash."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    try:
        candidate = _scrypt(password, salt, n, r, p, len(digest))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, digest)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with other parameters than the current ones (or cannot be parsed)."""
    parsed = _parse(stored)
    if parsed is None:
        return True
    n, r, p, salt, digest = parsed
    return (n, r, p, len(salt), len(digest)) != (SCRYPT_N, SCRYPT_R, SCRYPT_P, SALT_BYTES, HASH_BYTES)


# -- strength ----------------------------------------------------------------------------------------------

# Leetspeak undone before the common-password lookup, so "P@ssw0rd" is recognised as "password".
_DELEET = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e", "$": "s", "5": "s",
                         "7": "t", "+": "t"})
_LEADING_DECORATION = re.compile(r"^[^a-z]+")
_TRAILING_DECORATION = re.compile(r"[^a-z]+$")


def _candidates(password: str) -> set[str]:
    """The forms of ``password`` looked up in the common list: as typed, and without decoration.

    "Password1!", "!Admin2024" and "P@ssw0rd" are the listed words with digits and specials around them or
    letters swapped for look-alikes; attackers' dictionaries try exactly these variants first.
    """
    lower = password.lower()
    trimmed = _TRAILING_DECORATION.sub("", lower)
    deleeted = trimmed.translate(_DELEET)
    forms = {lower, trimmed, deleeted, _LEADING_DECORATION.sub("", trimmed), _LEADING_DECORATION.sub("", deleeted)}
    return {form for form in forms if form}


@functools.cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("gateway.security").joinpath("data", _COMMON_FILE).read_text(encoding="utf-8")
    words: set[str] = set()
    for line in text.splitlines():
        word = line.strip().lower()
        if word and not word.startswith("#"):
            words.add(word)
            # Also the undecorated forms of listed words ("abc123" -> "abc"), but not ones too short to
            # mean anything.
            words.update(form for form in _candidates(word) if len(form) >= MIN_UNDECORATED)
    return frozenset(words)


def is_common(password: str) -> bool:
    """Whether ``password`` is a known default or common password, also when trivially decorated."""
    lower = password.lower()
    # Undecorated forms count only from 4 letters on: "Sa#4829173" is not the default password "sa".
    forms = {lower} | {form for form in _candidates(password) if len(form) >= MIN_UNDECORATED}
    return not _common_passwords().isdisjoint(forms)


def check_password(password: str, *, username: str | None = None) -> list[str]:
    """The ways ``password`` fails the strength policy (AUTH-002, AUTH-005); empty when it passes."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if any(unicodedata.category(c).startswith("C") for c in password):
        problems.append("must not contain control characters")
    if not any(c.islower() for c in password):
        problems.append("must contain a lower-case letter")
    if not any(c.isupper() for c in password):
        problems.append("must contain an upper-case letter")
    if not any(c.isdigit() for c in password):
        problems.append("must contain a digit")
    if not any(not c.isalnum() for c in password):
        problems.append("must contain a special character (not a letter or digit)")
    if is_common(password):
        problems.append("is a known default or common password")
    if username and len(username) >= MIN_USERNAME_CHECK and username.lower() in password.lower():
        problems.append("must not contain the user name")
    return problems


def _is_arithmetic(digits: str) -> bool:
    # Constant step modulo 10: 12345678, 87654321, 90123456, 13579135 (step 0 is a repeat, handled apart).
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(digits)}
    return len(steps) == 1 and steps != {0}


def _is_repeat(digits: str) -> bool:
    # A few distinct digits (11111111, 11112222, 12121212) or a short block repeated (12341234, 123123123).
    if len(set(digits)) <= 2:
        return True
    return any(digits == (digits[:period] * len(digits))[: len(digits)] for period in range(1, len(digits) // 2 + 1))


def _collapse(digits: str) -> str:
    # "11223344" -> "1234": doubled digits hide a run from the plain checks.
    return "".join(d for i, d in enumerate(digits) if i == 0 or d != digits[i - 1])


PIN_RUN = "must not be a run of consecutive digits (like 12345678 or 87654321)"
PIN_REPEAT = "must not be a repeat pattern (like 11112222 or 12121212)"


def check_pin(pin: str) -> list[str]:
    """The ways a numeric PIN fails AUTH-006; empty when it passes."""
    if not re.fullmatch(r"[0-9]+", pin):
        return ["must contain digits only"]
    problems: list[str] = []
    if len(pin) < MIN_PIN_DIGITS:
        problems.append(f"must have at least {MIN_PIN_DIGITS} digits")
    collapsed = _collapse(pin)
    doubled = len(collapsed) <= len(pin) // 2  # mostly repeated digits: judge the collapsed form too
    if _is_arithmetic(pin):
        problems.append(PIN_RUN)
    elif _is_repeat(pin):
        problems.append(PIN_REPEAT)
    elif doubled and _is_arithmetic(collapsed):
        problems.append(PIN_RUN)
    elif doubled and _is_repeat(collapsed):
        problems.append(PIN_REPEAT)
    return problems


# -- generation --------------------------------------------------------------------------------------------


def generate_password(length: int = DEFAULT_GENERATED_LENGTH) -> str:
    """A random password of ``length`` characters that passes ``check_password`` (for one-time passwords)."""
    if not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"length must be between {MIN_PASSWORD_LENGTH} and {MAX_PASSWORD_LENGTH}")
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, GENERATED_SPECIALS)
    alphabet = "".join(classes)
    rng = secrets.SystemRandom()
    while True:
        chars = [secrets.choice(c) for c in classes]
        chars += [secrets.choice(alphabet) for _ in range(length - len(classes))]
        rng.shuffle(chars)
        password = "".join(chars)
        if not check_password(password):
            return password


def generate_secret_bytes(n: int = 32) -> bytes:
    """``n`` random bytes from the OS's CSPRNG (station passwords, keys)."""
    if n < 1:
        raise ValueError("n must be positive")
    return secrets.token_bytes(n)
