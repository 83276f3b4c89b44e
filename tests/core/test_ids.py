"""Ids: ``<prefix>_`` then a 48-bit millisecond timestamp and 80 random bits in Crockford base32."""

from __future__ import annotations

import time

from wsguard import ids

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + ALPHABET.index(char)
    return value


def test_an_id_carries_its_kind_its_creation_millisecond_and_80_random_bits() -> None:
    before = time.time_ns() // 1_000_000
    made = [ids.new_id(ids.CONNECTION) for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == len(made)
    for text in made:
        prefix, _, body = text.partition("_")
        assert prefix == "conn", text
        assert len(body) == 26, text
        value = _decode(body)
        assert value < 1 << 128, text
        assert before <= value >> 80 <= after, text
    assert len({_decode(text.partition("_")[2]) & ((1 << 80) - 1) for text in made}) == len(made)


def test_ids_sort_by_creation_time() -> None:
    first = ids.new_id(ids.SESSION)
    deadline = time.monotonic() + 1
    while time.time_ns() // 1_000_000 == _decode(first[4:]) >> 80 and time.monotonic() < deadline:
        time.sleep(0.0005)
    assert first < ids.new_id(ids.SESSION)


def test_a_session_id_belongs_to_its_user_only() -> None:
    signer = ids.SessionSigner(b"k" * 32)
    session = signer.new_session("alice")
    assert signer.belongs_to(session, "alice")
    assert not signer.belongs_to(session, "bob")
    assert not signer.belongs_to(session.partition(".")[0], "alice")
