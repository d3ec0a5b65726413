"""Password hashing with scrypt (a memory-hard KDF from the standard library).

A stored password reads ``scrypt$<n>$<r>$<p>$<salt hex>$<key hex>``: each user
gets a fresh random salt, and the cost parameters travel with the hash so they
can be raised later without breaking old rows. Hashing takes tens of
milliseconds of CPU on purpose, so an async app runs it in a worker thread::

    stored = await asyncio.to_thread(auth.hash_password, password)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "scrypt"
# The cost Django's ScryptPasswordHasher uses: 16 MiB of memory per hash.
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_MEMORY = 64 * 1024 * 1024


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY, dklen=length)


def hash_password(password: str) -> str:
    """The string to store for ``password``, with a new random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, N, R, P, KEY_BYTES)
    return f"{SCHEME}${N}${R}${P}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` result), in constant time."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        expected = bytes.fromhex(key)
        if scheme != SCHEME:
            return False
        derived = _derive(password, bytes.fromhex(salt), int(n), int(r), int(p), len(expected))
    except ValueError:  # not a hash of ours
        return False
    return hmac.compare_digest(derived, expected)


# Checked when the username is unknown, so that a login takes as long whether or
# not the user exists.
DUMMY_HASH = hash_password(secrets.token_hex(8))
