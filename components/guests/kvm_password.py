"""SHA-512 crypt (``$6$``) for the kickstart's ``rootpw --iscrypted``, pure Python.

Python's ``crypt`` module is deprecated (gone in 3.13) and passlib is not a dependency, so this is
Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512" algorithm as glibc implements it
(https://www.akkadia.org/drepper/SHA-crypt.txt). The salt is derived from the guest's name, so
the hash is a pure function of (name, password): re-rendering never changes ks.cfg, and two guests
with the same password still get different hashes. Tests compare it with ``openssl passwd -6``.
"""

from __future__ import annotations

import hashlib

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ROUNDS = 5000  # glibc's default; the default is written without "rounds=" in the hash
# Byte order in which glibc encodes the 64-byte digest, three bytes at a time (then byte 63):
# (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), ...
_ORDER = [((n, n + 21, n + 42) * 2)[n % 3 :][:3] for n in range(21)]


def salt_for(name: str) -> str:
    """A 16-character crypt salt that depends only on ``name``."""
    digest = hashlib.sha256(f"virtfleet-rootpw:{name}".encode()).digest()
    return "".join(_ALPHABET[b % 64] for b in digest[:16])


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // 64 + 1))[:length]


def sha512_crypt(password: str, salt: str) -> str:
    """``$6$<salt>$<hash>`` of ``password``, identical to glibc's ``crypt(3)`` with 5000 rounds."""
    if not salt or len(salt) > 16 or any(c not in _ALPHABET for c in salt):
        raise ValueError("a SHA-512 crypt salt is 1-16 characters of [./0-9A-Za-z]")
    pw, s = password.encode(), salt.encode()
    b = hashlib.sha512(pw + s + pw).digest()
    a = hashlib.sha512(pw + s + _repeat(b, len(pw)))
    n = len(pw)
    while n:
        a.update(b if n & 1 else pw)
        n >>= 1
    a_digest = a.digest()
    p = _repeat(hashlib.sha512(pw * len(pw)).digest(), len(pw))
    s_bytes = _repeat(hashlib.sha512(s * (16 + a_digest[0])).digest(), len(s))
    c = a_digest
    for i in range(ROUNDS):
        h = hashlib.sha512(p if i & 1 else c)
        if i % 3:
            h.update(s_bytes)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    return f"$6${salt}${_encode(c)}"


def _encode(digest: bytes) -> str:
    out = []
    for i, j, k in _ORDER:
        value = (digest[i] << 16) | (digest[j] << 8) | digest[k]
        out.append("".join(_ALPHABET[(value >> (6 * n)) & 63] for n in range(4)))
    value = digest[63]
    out.append(_ALPHABET[value & 63] + _ALPHABET[(value >> 6) & 63])
    return "".join(out)


def root_password_hash(guest_name: str, password: str) -> str:
    return sha512_crypt(password, salt_for(guest_name))
