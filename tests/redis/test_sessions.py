"""``resume`` across instances on one Redis whatever signs the tokens: the instances share a
session-signing key through Redis, with no setting asked of the operator.

The production setups where they used to disagree: ``--jwt-public-key`` (no shared secret to
derive the key from) and an embedding's own ``authenticate``. And an instance that started while
Redis was down: it signs with a key of its own until it has read the shared one.
"""

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import ClientConnection

from tests.redis.cluster_clients import AnyRedis, close_code
from tests.redis.conftest import LEASE_TTL
from tests.redis.test_tickets import open_with_ticket, shared_app, ticket_of
from wsguard.processes import ServerProcess, eventually, free_port
from wsguard.processes.clients import Frame, open_socket
from wsguard.processes.redis_server import RedisServer

Sign = Callable[[str], str]


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Sign]:
    """A public key file for ``--jwt-public-key`` and a way to sign RS256 tokens with its pair."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "public.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def sign(user_id: str) -> str:
        return jwt.encode({"sub": user_id, "exp": int(time.time()) + 600}, private, algorithm="RS256")

    return path, sign


def public_key_instance(redis_url: str, public_key: Path) -> ServerProcess:
    """A production-like instance: RS256 tokens only, no secret, no ``--dev``."""
    flags = ("--backend", redis_url, "--jwt-public-key", str(public_key))
    rates = ("--lease-ttl", str(LEASE_TTL), "--connect-rate-per-user", "0")
    return ServerProcess(*flags, *rates, dev=False)


async def resumed_elsewhere(
    first: ServerProcess, second: ServerProcess, token: str
) -> tuple[Frame, Frame, ClientConnection, ClientConnection]:
    """Open on ``first``, resume its session on ``second``: both welcomes and both sockets."""
    old, welcome = await open_socket(first.ws_url, token)
    new, again = await open_socket(second.ws_url, token, resume=welcome["session_id"])
    return welcome, again, old, new


def test_resume_on_another_instance_with_rs256_tokens_takes_the_session_over(
    redis_server: AnyRedis, rsa_keys: tuple[Path, Sign]
) -> None:
    public_key, sign = rsa_keys
    with (
        public_key_instance(redis_server.url, public_key) as a,
        public_key_instance(redis_server.url, public_key) as b,
    ):

        async def scenario() -> None:
            welcome, again, old, new = await resumed_elsewhere(a, b, sign("traveller"))
            assert again["session_id"] == welcome["session_id"], "the same session on B"
            assert again["connection_id"] != welcome["connection_id"]
            assert await close_code(old) == 4002, "the connection on A was replaced at once"
            assert old.close_reason == "replaced"
            back, third = await open_socket(a.ws_url, sign("traveller"), resume=welcome["session_id"])
            assert third["session_id"] == welcome["session_id"], "and back on A"
            assert await close_code(new) == 4002
            intruder, theirs = await open_socket(b.ws_url, sign("intruder"), resume=welcome["session_id"])
            assert theirs["session_id"] != welcome["session_id"], "a session is its user's only"
            assert back.close_code is None
            for socket in (back, intruder):
                await socket.close()

        asyncio.run(scenario())
        for instance in (a, b):
            instance.wait_idle(timeout=LEASE_TTL * 2)


def test_resume_across_instances_of_an_embedding_with_its_own_authenticate_and_tickets(
    redis_server: AnyRedis,
) -> None:
    with shared_app(redis_server.url) as a, shared_app(redis_server.url) as b:
        user = {"X-User": "embedded"}

        async def scenario() -> None:
            old, welcome = await open_with_ticket(a, ticket_of(a, user))
            new, again = await open_with_ticket(b, ticket_of(b, user), resume=welcome["session_id"])
            assert again["session_id"] == welcome["session_id"]
            assert await close_code(old) == 4002
            await new.close()

        asyncio.run(scenario())


@pytest.fixture
def late_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, on a port chosen before it runs."""
    server = RedisServer(port=free_port())
    try:
        yield server
    finally:
        server.stop()


def test_an_instance_started_without_redis_signs_locally_then_takes_the_shared_key(
    late_redis: RedisServer, rsa_keys: tuple[Path, Sign]
) -> None:
    """Sessions made while it could not read the shared key resume on it (not on the others);
    within a sweep (5 s) of Redis answering, its new sessions resume everywhere."""
    public_key, sign = rsa_keys
    token = sign("early")
    with public_key_instance(late_redis.url, public_key) as a:
        assert a.metrics()["wsguard_backend_up"] == 0

        async def during_outage() -> str:
            socket, welcome = await open_socket(a.ws_url, token)
            await socket.close()
            session: str = welcome["session_id"]
            return session

        early_session = asyncio.run(during_outage())
        late_redis.start()
        with public_key_instance(late_redis.url, public_key) as b:

            async def attempt() -> bool:
                welcome, again, old, new = await resumed_elsewhere(a, b, token)
                await asyncio.gather(old.close(), new.close())
                return bool(again["session_id"] == welcome["session_id"])

            started = time.monotonic()
            eventually(lambda: asyncio.run(attempt()), bool, timeout=15, interval=0.5, what="resume A -> B")
            print(f"\nsessions of A resume on B {time.monotonic() - started:.1f} s after Redis started")

            async def the_early_session() -> tuple[str, str]:
                here, on_a = await open_socket(a.ws_url, token, resume=early_session)
                there, on_b = await open_socket(b.ws_url, token, resume=early_session)
                await asyncio.gather(here.close(), there.close())
                return on_a["session_id"], on_b["session_id"]

            on_a, on_b = asyncio.run(the_early_session())
            assert on_a == early_session, "a session signed before the switch still resumes where it was made"
            assert on_b != early_session, "but not elsewhere: the documented cost of starting without Redis"
