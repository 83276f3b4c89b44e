"""Bring your own identity provider: a real server verifies tokens against a JWKS URL that the test
serves itself, with tokens shaped like Firebase's, Auth0's, Cognito's and Keycloak's.

Each test counts the requests at the JWKS endpoint: a server must fetch once, then again only
for a new key, and never more than once per few seconds however many tokens name unknown keys.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import InvalidStatus

from tests.security.jwks_provider import PROVIDERS, JwksProvider, Provider, rsa_key, unsigned
from wsguard.processes import ServerProcess, StartServer, eventually, free_port
from wsguard.processes.clients import open_socket, receive, send
from wsguard.server.jwks_url import MIN_REFETCH_SECONDS

USERS = {"firebase": "kX3bq9TfVhZ2", "auth0": "auth0|6510c0ffee", "cognito": "alice", "keycloak": "bob"}


async def _upgrade(server: ServerProcess, token: str) -> int | dict[str, Any]:
    """The ``welcome`` frame, or the HTTP status the upgrade was refused with."""
    try:
        socket, welcome = await open_socket(server.ws_url, token)
    except InvalidStatus as refused:
        return refused.response.status_code
    await socket.close()
    return welcome


def upgrade(server: ServerProcess, token: str) -> int | dict[str, Any]:
    return asyncio.run(_upgrade(server, token))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def publish(server: ServerProcess, token: str) -> int:
    body = {"user_id": "someone", "thread_id": "t-1", "event": "e", "data": {}}
    return server.http.post("/api/publish", json=body, headers=bearer(token)).status_code


def new_thread(server: ServerProcess, token: str) -> int:
    return server.http.post("/api/threads", headers=bearer(token)).status_code


def past_the_interval(provider: JwksProvider) -> None:
    """Wait until the server may fetch again: its last fetch (the provider's last request) is
    more than the minimum interval ago, and no fetch it had asked for came meanwhile."""
    while (left := provider.requests[-1] + MIN_REFETCH_SECONDS + 0.2 - time.monotonic()) > 0:
        time.sleep(left)


def _claims(user: str, ttl: float = 600) -> dict[str, Any]:
    return {"sub": user, "exp": int(time.time() + ttl)}


@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
def test_a_provider_shaped_token_names_its_user_and_other_tokens_are_refused(
    start_server: StartServer, provider: Provider
) -> None:
    with JwksProvider() as idp:
        idp.add("k1")
        server = start_server(*provider.server_flags(idp.url), "--connect-rate-per-user", "0", dev=False)
        user = USERS[provider.name]
        claims = provider.claims(user)
        welcome = upgrade(server, idp.sign(claims, "k1"))
        assert isinstance(welcome, dict), welcome
        assert welcome["user_id"] == user
        assert new_thread(server, idp.sign(claims, "k1")) == 200

        refused = {"another issuer": {**claims, "iss": "https://issuer.attacker.example/"}}
        if provider.audience:
            refused["another audience"] = {**claims, "aud": "another-app"}
            refused["no audience"] = {k: v for k, v in claims.items() if k != "aud"}
        else:  # its access tokens carry no aud; a token that does (an ID token) is not for us
            refused["an audience"] = {**claims, "aud": "3n4b5urk1ft4fl3mg5e62d9ado"}
        for why, bad in refused.items():
            token = idp.sign(bad, "k1")
            assert upgrade(server, token) == 401, why
            assert new_thread(server, token) == 401, why

        assert publish(server, idp.sign(provider.claims(user, admin=True), "k1")) == 200
        assert publish(server, idp.sign(claims, "k1")) == 403
        assert idp.fetches == 1
        server.wait_idle(timeout=5)


def test_a_rotated_key_is_taken_at_its_first_token_and_known_keys_outlive_the_provider(
    start_server: StartServer,
) -> None:
    idp = JwksProvider(cache_control="public, max-age=3600").start()
    try:
        idp.add("k1")
        server = start_server("--jwks-url", idp.url, "--connect-rate-per-user", "0", dev=False)
        assert upgrade(server, idp.sign(_claims("before"), "k1"))["user_id"] == "before"  # type: ignore[index]
        past_the_interval(idp)
        idp.add("k2")
        del idp.keys["k1"]  # the rotation: k2 in, k1 out
        fetched = idp.fetches
        assert upgrade(server, idp.sign(_claims("rotated"), "k2"))["user_id"] == "rotated"  # type: ignore[index]
        assert idp.fetches == fetched + 1
        old_key = rsa_key()
        stale = jwt.encode(_claims("stale"), old_key, algorithm="RS256", headers={"kid": "k1"})
        assert upgrade(server, stale) == 401, "a key the provider removed still verifies"
    finally:
        idp.stop()
    for n in range(3):  # the provider is down: the keys known still verify new tokens
        token = jwt.encode(
            _claims(f"while-down-{n}"), idp.keys["k2"], algorithm="RS256", headers={"kid": "k2"}
        )
        assert upgrade(server, token)["user_id"] == f"while-down-{n}"  # type: ignore[index]
        assert new_thread(server, token) == 200
    server.wait_idle(timeout=5)


def test_a_hundred_unknown_kids_cause_at_most_a_handful_of_fetches(start_server: StartServer) -> None:
    with JwksProvider() as idp:
        idp.add("k1")
        server = start_server("--jwks-url", idp.url, "--connect-rate-per-user", "0", dev=False)
        assert isinstance(upgrade(server, idp.sign(_claims("known"), "k1")), dict)
        stranger = rsa_key()
        tokens = [
            jwt.encode(_claims(f"u{n}"), stranger, algorithm="RS256", headers={"kid": str(uuid.uuid4())})
            for n in range(100)
        ]
        before = idp.fetches

        async def flood() -> list[int | dict[str, Any]]:
            return await asyncio.gather(*(_upgrade(server, token) for token in tokens[:70]))

        assert asyncio.run(flood()) == [401] * 70
        assert [new_thread(server, token) for token in tokens[70:]] == [401] * 30
        time.sleep(MIN_REFETCH_SECONDS + 1)  # a fetch the misses asked for, after the interval
        assert idp.fetches - before <= 3, f"{idp.fetches - before} fetches for 100 unknown kids"
        assert isinstance(upgrade(server, idp.sign(_claims("still-known"), "k1")), dict)
        server.wait_idle(timeout=5)


def _hs256_with_public_key(key: rsa.RSAPrivateKey, kid: str) -> str:
    """The classic confusion: an HS256 token whose "secret" is the RSA public key's PEM."""
    secret = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = part(json.dumps(_claims("forged")).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


def test_bad_keys_and_bad_tokens_are_refused_with_the_reason_at_debug(
    start_server: StartServer, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    with JwksProvider() as idp:
        key = idp.add("k1", rsa_key())
        idp.body = b'{"keys": [ {"kty": "RSA", "n": '  # malformed JSON
        server = start_server("--jwks-url", idp.url, "--log-level", "debug", dev=False, log_path=log)
        good = idp.sign(_claims("good"), "k1")
        eventually(lambda: idp.fetches, lambda n: n >= 1, timeout=5, what="the first fetch")
        assert upgrade(server, good) == 401
        assert new_thread(server, good) == 401

        secret = b"a shared secret no JWKS may hold"
        oct_key = {"kty": "oct", "kid": "k1", "alg": "HS256", "k": base64.urlsafe_b64encode(secret).decode()}
        idp.body = json.dumps({"keys": [oct_key]}).encode()
        served_oct = idp.fetches
        shared = jwt.encode(_claims("shared"), secret, algorithm="HS256", headers={"kid": "k1"})
        eventually(
            lambda: (upgrade(server, good), upgrade(server, shared), idp.fetches),
            lambda seen: seen[2] > served_oct,
            timeout=15,
            interval=0.5,
            what="a fetch of the oct-only JWKS",
        )
        assert upgrade(server, good) == 401
        assert upgrade(server, shared) == 401, "an oct key of a JWKS verified a token"

        idp.body = None
        eventually(
            lambda: upgrade(server, good), lambda seen: isinstance(seen, dict), timeout=15, interval=0.5
        )
        fetched = idp.fetches
        attacks = {
            "alg none": unsigned(_claims("nobody"), "k1"),
            "HS256 with the RSA key": _hs256_with_public_key(key, "k1"),
            "alg none, unknown kid": unsigned(_claims("nobody"), "no-such-kid"),
            "not a JWT": "eyJ.garbage",
        }
        for why, token in attacks.items():
            assert upgrade(server, token) == 401, why
            assert new_thread(server, token) == 401, why
        oversized = idp.sign({**_claims("big"), "pad": "x" * 20000}, "k1")
        assert upgrade(server, oversized) in (401, 431)
        with contextlib.suppress(httpx.TransportError):  # the head limit may close the connection
            assert new_thread(server, oversized) in (401, 431)

        async def refresh_with_oversized() -> dict[str, Any]:
            socket, _ = await open_socket(server.ws_url, good)
            await send(
                socket, type="refresh", token=idp.sign({**_claims("good"), "pad": "x" * 9000}, "k1"), ref=1
            )
            reply = await receive(socket)
            await socket.close()
            return reply

        reply = asyncio.run(refresh_with_oversized())
        assert (reply["type"], reply["code"]) == ("error", "unauthorized"), reply
        assert "over 8192 bytes" in reply["message"]
        assert idp.fetches == fetched, "a bad token made the server fetch"
        assert server.http.get("/healthz").status_code == 200
        server.wait_idle(timeout=5)
    text = log.read_text()
    assert " 500" not in text, text
    assert "Traceback" not in text, text
    reasons = [line for line in text.splitlines() if "DEBUG" in line and "token refused:" in line]
    assert any("alg value is not allowed" in line for line in reasons), reasons
    assert any("no key for a token signed with none" in line for line in reasons), reasons
    assert sum("cannot fetch the keys" in line and "WARNING" in line for line in text.splitlines()) == 1, text


def test_a_server_started_while_the_provider_is_down_warns_once_and_refuses_until_keys_load(
    start_server: StartServer, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    idp = JwksProvider(port=free_port())
    idp.add("k1")
    server = start_server("--jwks-url", idp.url, "--connect-rate-per-user", "0", dev=False, log_path=log)
    token = idp.sign(_claims("patient"), "k1")
    for _ in range(5):
        assert upgrade(server, token) == 401
        assert new_thread(server, token) == 401
    with idp:
        eventually(lambda: new_thread(server, token), lambda status: status == 200, timeout=20, interval=0.5)
        assert upgrade(server, token)["user_id"] == "patient"  # type: ignore[index]
    server.wait_idle(timeout=5)
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line and idp.url in line]
    assert len(warnings) == 1, warnings
    assert "tokens are refused (401) until they load" in warnings[0]
