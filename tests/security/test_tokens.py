"""Tokens: RS256, ES256 and JWKS keys (with rotation), expiry enforced during the session, refresh."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.server.start_refusals import refused_at_start
from wsguard.processes import ServerProcess, StartServer
from wsguard.processes.clients import open_socket, receive, send

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _claims(user_id: str = "keyed", ttl: float = 600) -> dict[str, Any]:
    return {"sub": user_id, "exp": int(time.time() + ttl)}


def _pem(key: PrivateKey, path: Path) -> str:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


async def _status(server: ServerProcess, token: str) -> int:
    try:
        socket = await connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    except InvalidStatus as refused:
        return refused.response.status_code
    await socket.close()
    return 101


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
def test_public_key_tokens(start_server: StartServer, tmp_path: Path, algorithm: str, make_key: Any) -> None:
    key, stranger = make_key(), make_key()
    server = start_server("--jwt-public-key", _pem(key, tmp_path / "key.pem"), dev=False)
    assert asyncio.run(_status(server, jwt.encode(_claims(), key, algorithm=algorithm))) == 101
    assert asyncio.run(_status(server, jwt.encode(_claims(), stranger, algorithm=algorithm))) == 401
    hs = jwt.encode(_claims(), "a-guessable-shared-secret-32-bytes!!", algorithm="HS256")
    assert asyncio.run(_status(server, hs)) == 401


def _write_jwks(path: Path, keys: dict[str, rsa.RSAPrivateKey]) -> None:
    entries = []
    for kid, key in keys.items():
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        entries.append({**entry, "kid": kid, "alg": "RS256", "use": "sig"})
    path.write_text(json.dumps({"keys": entries}))


def test_jwks_file_is_reloaded_when_it_changes(start_server: StartServer, tmp_path: Path) -> None:
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path / "jwks.json"
    _write_jwks(jwks, {"k1": old})
    server = start_server("--jwks-file", str(jwks), dev=False)
    signed_new = jwt.encode(_claims(), new, algorithm="RS256", headers={"kid": "k2"})
    assert (
        asyncio.run(_status(server, jwt.encode(_claims(), old, algorithm="RS256", headers={"kid": "k1"})))
        == 101
    )
    assert asyncio.run(_status(server, signed_new)) == 401
    time.sleep(0.01)
    _write_jwks(jwks, {"k2": new})
    assert asyncio.run(_status(server, signed_new)) == 101


def test_a_bad_key_file_exits_with_one_line_naming_the_flag(tmp_path: Path) -> None:
    line = refused_at_start("--jwt-public-key", str(tmp_path / "nope.pem"))
    assert "--jwt-public-key" in line, line


SHORT_TTL = 5
"""A short token's lifetime. ``exp`` is whole seconds (truncated), so such a token expires
between ``SHORT_TTL - 1`` and ``SHORT_TTL`` seconds after it is issued: time to connect."""


def _exp(token: str) -> float:
    exp: float = jwt.decode(token, options={"verify_signature": False})["exp"]
    return exp


def test_expiry_during_the_session_closes_with_4401(start_server: StartServer) -> None:
    server = start_server("--jwt-leeway", "0")
    token = server.token("brief", ttl=SHORT_TTL)

    async def scenario() -> tuple[int | None, str | None, float]:
        socket, _ = await open_socket(server.ws_url, token)
        await send(socket, type="ping", ref="alive")
        assert await receive(socket) == {"type": "pong", "ref": "alive"}
        await asyncio.wait_for(socket.wait_closed(), SHORT_TTL + 10)
        return socket.close_code, socket.close_reason, time.time()

    code, reason, closed_at = asyncio.run(scenario())
    assert (code, reason) == (4401, "token_expired")
    assert closed_at >= _exp(token), "closed before the token expired"
    assert server.wait_idle(timeout=5.0)['wsguard_connections_closed_total{reason="token_expired"}'] == 1


def test_refresh_extends_the_session_and_refuses_another_user(start_server: StartServer) -> None:
    server = start_server("--jwt-leeway", "0")
    short = server.token("renewer", ttl=SHORT_TTL)
    stranger = server.token("someone-else")
    longer = server.token("renewer", ttl=60)

    async def scenario() -> None:
        socket, _ = await open_socket(server.ws_url, short)
        await send(socket, type="refresh", token=stranger, ref=1)
        refused = await receive(socket)
        assert (refused["type"], refused["code"], refused["ref"]) == ("error", "unauthorized", 1)
        await send(socket, type="refresh", token=longer, ref=2)
        refreshed = await receive(socket)
        assert refreshed["type"] == "refreshed"
        assert refreshed["exp"] == _exp(longer)
        # The server would close at the first token's expiry: once the clock is past it, a
        # ping round-trip on the same socket proves that the session outlived it.
        await asyncio.sleep(max(0.0, _exp(short) - time.time()) + 1.0)
        await send(socket, type="ping", ref=3)
        assert await receive(socket) == {"type": "pong", "ref": 3}
        assert socket.close_code is None
        await socket.close()

    asyncio.run(scenario())
