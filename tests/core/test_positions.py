"""The position token of an SSE stream: it round-trips for its user and for no one else."""

import base64

from hypothesis import given
from hypothesis import strategies as st

from wsguard.core.frames import Since
from wsguard.core.positions import MAX_TOKEN_CHARS, decode_positions, encode_positions
from wsguard.ids import SessionSigner

SIGNER = SessionSigner(b"k" * 32)


def test_round_trip_for_its_user() -> None:
    positions = [("t1", Since("e1", 7)), ("thread.2", Since("e2", 0))]
    token = encode_positions(SIGNER, "alice", positions)
    assert decode_positions(SIGNER, "alice", token) == dict(positions)


def test_another_user_reads_nothing() -> None:
    token = encode_positions(SIGNER, "alice", [("t1", Since("e1", 7))])
    assert decode_positions(SIGNER, "bob", token) == {}


def test_a_tampered_token_reads_nothing() -> None:
    token = encode_positions(SIGNER, "alice", [("t1", Since("e1", 7))])
    forged = encode_positions(SIGNER, "alice", [("t1", Since("e1", 9))])
    body, _, mac = token.rpartition(".")
    forged_body = forged.rpartition(".")[0]
    assert decode_positions(SIGNER, "alice", f"{forged_body}.{mac}") == {}
    assert decode_positions(SIGNER, "alice", f"{body}.{'0' * 20}") == {}
    assert decode_positions(SIGNER, "alice", "") == {}
    assert decode_positions(SIGNER, "alice", "p1.!!!.abc") == {}


def test_another_key_reads_nothing_until_it_is_kept() -> None:
    token = encode_positions(SIGNER, "alice", [("t1", Since("e1", 7))])
    other = SessionSigner(b"o" * 32)
    assert decode_positions(other, "alice", token) == {}
    other.use(b"k" * 32)
    other.use(b"n" * 32)
    assert decode_positions(other, "alice", token) == {"t1": Since("e1", 7)}


def test_signed_nonsense_is_dropped_entry_by_entry() -> None:
    payload = base64.urlsafe_b64encode(b'[["t1","e",3],["bad id!","e",1],["t2","e",-1],5]')
    body = "p1." + payload.decode().rstrip("=")
    token = f"{body}.{SIGNER.sign('alice', body)}"
    assert decode_positions(SIGNER, "alice", token) == {"t1": Since("e", 3)}


def test_the_token_is_bounded_and_keeps_the_most_recent_first() -> None:
    positions = [(f"thread-{index:03d}-{'x' * 100}", Since("epoch" * 4, 10**9)) for index in range(100)]
    token = encode_positions(SIGNER, "alice", positions)
    assert MAX_TOKEN_CHARS - 200 < len(token) <= MAX_TOKEN_CHARS
    decoded = decode_positions(SIGNER, "alice", token)
    assert list(decoded) == [thread for thread, _ in positions[: len(decoded)]]
    assert 15 < len(decoded) < 100


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
            st.text("abcdef0123456789", min_size=1, max_size=64),
            st.integers(0, 2**53),
        ),
        max_size=120,
        unique_by=lambda entry: entry[0],
    )
)
def test_any_positions_give_a_bounded_token_that_reads_back_a_prefix(
    entries: list[tuple[str, str, int]],
) -> None:
    positions = [(thread, Since(epoch, offset)) for thread, epoch, offset in entries]
    token = encode_positions(SIGNER, "u", positions)
    assert len(token) <= MAX_TOKEN_CHARS
    decoded = decode_positions(SIGNER, "u", token)
    assert list(decoded.items()) == positions[: len(decoded)]
    if len(token) < MAX_TOKEN_CHARS - 400:
        assert len(decoded) == len(positions)
