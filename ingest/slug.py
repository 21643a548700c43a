"""The pseudonymous `user_slug` of an IP address, as docs/events.md defines it.

hex(scrypt(ip, salt, n=2**14, r=8, p=1, dklen=32)): the same IP always maps to the same 64-hex slug
under one salt, and the IP cannot be recovered from it without brute-forcing the salt.
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SLUG_BYTES = 32


def user_slug(ip_address: str, salt: str) -> str:
    """The slug of `ip_address` under `salt`; "" when no salt is configured (the turn belongs to no user).

    The address is hashed in its canonical text (the form the event stores in `ip_address`), so
    "2001:DB8::1" and "2001:db8:0::1" are one user. Raises ValueError when it is not an IP address.
    """
    if not salt:
        return ""
    return _scrypt_hex(ipaddress.ip_address(ip_address).compressed, salt)


# Cached because scrypt is slow on purpose (n=2**14), and a chatty visitor sends many turns from one IP.
@lru_cache(maxsize=4096)
def _scrypt_hex(canonical_ip: str, salt: str) -> str:
    digest = hashlib.scrypt(
        canonical_ip.encode(), salt=salt.encode(), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SLUG_BYTES
    )
    return digest.hex()
