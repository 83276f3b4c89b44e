"""Identifiers, created once at the edge and never recomputed.

Every id is ``<prefix>_<26 chars>``: a 48-bit millisecond timestamp and 80 random bits in
Crockford base32, so ids sort by creation time and carry their kind in the prefix.
"""

import hashlib
import hmac
import os
import re
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
THREAD_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")

CONNECTION = "conn"
SESSION = "ses"
RUN = "run"
REQUEST = "req"
THREAD = "thr"
TICKET = "tkt"


_PAIRS = tuple(high + low for high in _ALPHABET for low in _ALPHABET)
"""Every 10-bit value as its two base32 digits: an id is 13 lookups, not 26 divisions."""
_SHIFTS = tuple(range(120, -1, -10))


def new_id(prefix: str) -> str:
    """A fresh, time-sortable id of the kind ``prefix``."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return prefix + "_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def is_thread_id(value: object) -> bool:
    """Whether ``value`` is a valid thread id (PROTOCOL.md section 3)."""
    return isinstance(value, str) and THREAD_ID_PATTERN.fullmatch(value) is not None


class SessionSigner:
    """Session ids that prove which user they belong to, so that no record must outlive a connection.

    A session id is ``ses_<id>.<mac>`` where the mac binds it to the user id; a ``resume`` is
    honoured only when the mac verifies for the authenticated user.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, user_id: str, base: str) -> str:
        digest = hmac.new(self._secret, f"{user_id}\x00{base}".encode(), hashlib.sha256)
        return digest.hexdigest()[:20]

    def new_session(self, user_id: str) -> str:
        base = new_id(SESSION)
        return f"{base}.{self._mac(user_id, base)}"

    def belongs_to(self, session_id: str, user_id: str) -> bool:
        base, _, mac = session_id.partition(".")
        return bool(mac) and hmac.compare_digest(mac, self._mac(user_id, base))
