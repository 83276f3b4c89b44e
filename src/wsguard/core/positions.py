"""The position token of a Server-Sent Events stream: where each of its threads stands.

EventSource sends the last ``id:`` it saw back as ``Last-Event-ID`` when it reconnects. wsguard
makes that id a token of every thread's position (epoch and offset), signed for the stream's
user with the key that signs session ids, so that any instance of the cluster resumes it and no
record outlives the stream. A token that does not verify for the user (forged, tampered, another
user's, signed with a key no longer kept) reads as no position at all: the threads are then
subscribed afresh with ``recovered: false``, never read from a position the user did not reach.

A token is at most :data:`MAX_TOKEN_CHARS` long (it travels in a request header): the threads
whose positions do not fit, the least recently advanced first, are left out and resume as if
they had no position.
"""

import base64
import binascii
import json
from collections.abc import Iterable, Mapping

from wsguard.core.frames import Since
from wsguard.ids import SessionSigner, is_thread_id

MAX_TOKEN_CHARS = 4096
"""Well under the request head bounds of the HTTP edge and of common proxies (8 KiB)."""

_VERSION = "p1"
_MAX_EPOCH_CHARS = 64
_MAC_CHARS = 20


def encode_positions(signer: SessionSigner, user_id: str, positions: Iterable[tuple[str, Since]]) -> str:
    """The token of ``positions`` (thread id and position, the most recently advanced first)."""
    entries: list[str] = []
    size = 1
    for thread_id, since in positions:
        entry = json.dumps([thread_id, since.epoch, since.offset], separators=(",", ":"))
        if _token_chars(size + len(entry) + 1) > MAX_TOKEN_CHARS:
            break
        entries.append(entry)
        size += len(entry) + 1
    payload = base64.urlsafe_b64encode(f"[{','.join(entries)}]".encode()).decode().rstrip("=")
    body = f"{_VERSION}.{payload}"
    return f"{body}.{signer.sign(user_id, body)}"


def _token_chars(json_chars: int) -> int:
    """The length of the token whose payload is ``json_chars`` of ASCII JSON."""
    return len(_VERSION) + 1 + -(-json_chars * 4 // 3) + 1 + _MAC_CHARS


def decode_positions(signer: SessionSigner, user_id: str, token: str) -> Mapping[str, Since]:
    """The positions in ``token`` if it verifies for ``user_id``; otherwise none."""
    if len(token) > MAX_TOKEN_CHARS:
        return {}
    body, _, mac = token.rpartition(".")
    if not body.startswith(_VERSION + ".") or not signer.verify(user_id, body, mac):
        return {}
    payload = body[len(_VERSION) + 1 :]
    try:
        entries = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return {}
    positions: dict[str, Since] = {}
    if not isinstance(entries, list):
        return positions
    for entry in entries:
        if (
            isinstance(entry, list)
            and len(entry) == 3
            and is_thread_id(entry[0])
            and isinstance(entry[1], str)
            and 0 < len(entry[1]) <= _MAX_EPOCH_CHARS
            and type(entry[2]) is int
            and entry[2] >= 0
        ):
            positions[entry[0]] = Since(entry[1], entry[2])
    return positions
