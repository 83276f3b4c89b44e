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
    """Whether ``value`` is a valid thread id (docs/protocol.md section 3)."""
    return isinstance(value, str) and THREAD_ID_PATTERN.fullmatch(value) is not None


_ID_BODY = re.compile(f"[{_ALPHABET}]{{26}}")


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` has the shape of an id of the kind ``prefix`` (a forged ticket need not
    reach the backend to be refused)."""
    head, _, body = value.partition("_")
    return head == prefix and _ID_BODY.fullmatch(body) is not None


class SessionSigner:
    """Session ids (and other small texts) that prove which user they belong to, so that no record
    must outlive a connection.

    A session id is ``ses_<id>.<mac>`` where the mac binds it to the user id; a ``resume`` is
    honoured only when the mac verifies for the authenticated user.
    """

    KEPT = 3
    """Keys signed with before the current one that still verify: a session made with this
    instance's own key before it read the shared one still resumes here."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._previous: tuple[bytes, ...] = ()

    @staticmethod
    def _mac(secret: bytes, user_id: str, text: str) -> str:
        digest = hmac.new(secret, f"{user_id}\x00{text}".encode(), hashlib.sha256)
        return digest.hexdigest()[:20]

    def use(self, secret: bytes) -> bool:
        """Sign with ``secret`` from now on, and still verify with the last :attr:`KEPT` keys;
        False when it is the key in use already."""
        if secret == self._secret:
            return False
        kept = (self._secret, *(key for key in self._previous if key != secret))
        self._secret, self._previous = secret, kept[: self.KEPT]
        return True

    def sign(self, user_id: str, text: str) -> str:
        """A mac that binds ``text`` to ``user_id`` (20 hex digits)."""
        return self._mac(self._secret, user_id, text)

    def verify(self, user_id: str, text: str, mac: str) -> bool:
        """Whether ``mac`` binds ``text`` to ``user_id`` under the current or a kept key."""
        return any(
            hmac.compare_digest(mac, self._mac(secret, user_id, text))
            for secret in (self._secret, *self._previous)
        )

    def new_session(self, user_id: str) -> str:
        base = new_id(SESSION)
        return f"{base}.{self.sign(user_id, base)}"

    def belongs_to(self, session_id: str, user_id: str) -> bool:
        base, _, mac = session_id.partition(".")
        return bool(mac) and self.verify(user_id, base, mac)
