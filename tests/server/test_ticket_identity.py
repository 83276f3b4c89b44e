"""What a ticket carries: the whole identity the upgrade needs, as JSON, on any instance.

Plain code, no server: the codec round-trips every field of :class:`Identity` (a field added
there without being added to the codec fails here), and refuses anything it did not write.
"""

import asyncio
import dataclasses
import json

import pytest

from wsguard.backends.memory import MemoryBackend
from wsguard.ids import SessionSigner
from wsguard.server.auth import Identity
from wsguard.server.sessions import SharedSessionKey
from wsguard.server.tickets import Tickets, identity_from_json, identity_to_json

IDENTITIES = [
    Identity("alice"),
    Identity("bob", 1_900_000_000.25, admin=True),
    Identity('ünï\u2028code "quoted"', 0.0),
]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_every_field_of_an_identity_round_trips(identity: Identity) -> None:
    text = identity_to_json(identity)
    assert identity_from_json(text) == identity
    written = set(json.loads(text)) - {"v"}
    assert written == {field.name for field in dataclasses.fields(Identity)}, "a field left out"


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"user_id": "a", "expires_at": null, "admin": false}',
        '{"v": 2, "user_id": "a", "expires_at": null, "admin": false}',
        '{"v": 1, "user_id": "", "expires_at": null, "admin": false}',
        '{"v": 1, "user_id": "a", "expires_at": "soon", "admin": false}',
        '{"v": 1, "user_id": "a", "expires_at": true, "admin": false}',
        '{"v": 1, "user_id": "a", "expires_at": null, "admin": "yes"}',
        "not json",
    ],
)
def test_anything_the_codec_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's and the codec's messages differ
        identity_from_json(text)


def test_memory_tickets_carry_the_identity_once_and_forged_ones_never_reach_the_backend() -> None:
    async def scenario() -> None:
        backend = MemoryBackend(100, 60.0)
        tickets = Tickets(backend, ttl=30.0, max_per_user=1)
        admin = Identity("root", 1_900_000_000.0, admin=True)
        ticket = await tickets.issue(admin)
        assert ticket is not None
        assert await tickets.issue(admin) is None, "the cap"
        assert await tickets.redeem("tkt_forged") is None
        assert await tickets.redeem(ticket) == admin
        assert await tickets.redeem(ticket) is None
        assert backend.ticket_count == 0

    asyncio.run(scenario())


def test_on_one_process_the_local_session_key_stays() -> None:
    async def scenario() -> None:
        signer = SessionSigner(b"k" * 32)
        session = signer.new_session("alice")
        keeper = SharedSessionKey(signer, MemoryBackend(100, 60.0), b"k" * 32)
        await keeper.refresh()
        await keeper.refresh()
        assert not keeper.shared
        assert SessionSigner(b"k" * 32).belongs_to(signer.new_session("alice"), "alice")
        assert signer.belongs_to(session, "alice")

    asyncio.run(scenario())
