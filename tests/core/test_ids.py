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


def test_a_signer_moves_to_a_new_key_and_still_verifies_its_last_ones() -> None:
    signer = ids.SessionSigner(b"local" * 8)
    early = signer.new_session("alice")
    assert signer.use(b"shared" * 8)
    assert not signer.use(b"shared" * 8), "the key in use already"
    later = signer.new_session("alice")
    assert signer.belongs_to(early, "alice"), "made with the former key, still verified"
    assert signer.belongs_to(later, "alice")
    assert not signer.belongs_to(early, "bob")
    elsewhere = ids.SessionSigner(b"shared" * 8)
    assert elsewhere.belongs_to(later, "alice"), "another instance with the shared key agrees"
    assert not elsewhere.belongs_to(early, "alice"), "but not on a session signed with a local key"
    for n in range(ids.SessionSigner.KEPT):
        signer.use(bytes([n]) * 32)
    assert not signer.belongs_to(early, "alice"), "only the last few keys are kept"


def test_is_id_knows_the_shape_of_an_id_of_one_kind() -> None:
    ticket = ids.new_id(ids.TICKET)
    assert ids.is_id(ticket, ids.TICKET)
    assert not ids.is_id(ticket, ids.SESSION)
    for forged in ("tkt_forged", "tkt_" + "U" * 26, ticket + "0", "tkt" + ticket[3:].replace("_", "-"), ""):
        assert not ids.is_id(forged, ids.TICKET), forged
