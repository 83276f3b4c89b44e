"""A JWKS URL in the server's own loop: misses share one fetch, fetches keep a minimum interval,
failures keep the known keys, Cache-Control sets the refresh, and the task ends with the lifespan."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.security.jwks_provider import JwksProvider
from wsguard import jwt_algorithms
from wsguard.processes import eventually_async
from wsguard.server import jwks_url
from wsguard.server.auth import TokenAuthority, Unauthorized
from wsguard.server.guard import WSGuard
from wsguard.server.jwks_url import DEFAULT_MAX_AGE, MIN_REFETCH_SECONDS, JwksUrl, refresh_after
from wsguard.server.jwt_keys import KeySource
from wsguard.settings import Settings

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _document(*kids: str) -> dict[str, Any]:
    entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    return {"keys": [{**entry, "kid": kid, "alg": "RS256"} for kid in kids]}


class Provider:
    """A mock transport: what the JWKS URL answers, and how many times it was asked."""

    def __init__(self, *kids: str) -> None:
        self.kids = list(kids)
        self.status = 200
        self.requests = 0
        self.delay = 0.0
        self.cache_control = "max-age=600"

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return httpx.Response(self.status)
        return httpx.Response(200, json=_document(*self.kids), headers={"Cache-Control": self.cache_control})


def _token(kid: str, user: str = "u") -> str:
    claims = {"sub": user, "exp": int(time.time()) + 600}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": kid})


def _run(
    scenario: Callable[[JwksUrl, TokenAuthority, Provider], Any],
    *kids: str,
    cache_control: str = "max-age=600",
) -> None:
    provider = Provider(*kids)
    provider.cache_control = cache_control
    source = JwksUrl(
        "https://idp.example/jwks",
        jwt_algorithms.DEFAULT_PUBLIC,
        transport=httpx.MockTransport(provider.handle),
    )
    sources: list[KeySource] = [source]
    authority = TokenAuthority(sources, leeway=0, issuing_secret=None)

    async def main() -> None:
        authority.start()
        try:
            await eventually_async(_fetched(source), bool, timeout=5, what="the first fetch")
            await scenario(source, authority, provider)
        finally:
            await authority.stop()

    asyncio.run(main())


def _fetched(source: JwksUrl) -> Callable[[], Any]:
    async def probe() -> bool:
        return source.fetches >= 1 and not source._fetching

    return probe


@pytest.mark.parametrize(
    ("cache_control", "age", "seconds"),
    [
        (None, None, DEFAULT_MAX_AGE),
        ("public, max-age=19800, must-revalidate", None, 19800),
        ("max-age=600", "100", 500),
        ("max-age=5", None, 60),
        ("max-age=9999999", None, 86400),
        ("no-store", None, 60),
        ("max-age=soon", None, DEFAULT_MAX_AGE),
    ],
)
def test_cache_control_sets_the_refresh_within_bounds(
    cache_control: str | None, age: str | None, seconds: float
) -> None:
    assert refresh_after(cache_control, age) == seconds


def test_concurrent_misses_share_one_fetch_and_later_ones_wait_out_the_interval() -> None:
    async def scenario(source: JwksUrl, authority: TokenAuthority, provider: Provider) -> None:
        await asyncio.sleep(MIN_REFETCH_SECONDS)
        provider.kids.append("k2")
        provider.delay = 0.3
        before = provider.requests
        results = await asyncio.gather(
            *(authority.verify_fetching(_token("k2", f"u{n}")) for n in range(50)), return_exceptions=True
        )
        assert all(not isinstance(r, BaseException) for r in results), results
        assert provider.requests == before + 1
        started = time.monotonic()
        for n in range(100):
            with pytest.raises(Unauthorized):
                await authority.verify_fetching(_token(f"made-up-{n}"))
        assert time.monotonic() - started < 1.0, "a miss inside the interval waited for a fetch"
        assert provider.requests == before + 1
        await asyncio.sleep(MIN_REFETCH_SECONDS + 0.5)
        assert provider.requests == before + 2, "the misses asked for one fetch once the interval passed"

    _run(scenario, "k1")


def test_a_failing_provider_keeps_the_known_keys() -> None:
    async def scenario(source: JwksUrl, authority: TokenAuthority, provider: Provider) -> None:
        provider.status = 503
        await asyncio.sleep(MIN_REFETCH_SECONDS)
        with pytest.raises(Unauthorized):
            await authority.verify_fetching(_token("k-new"))
        assert provider.requests == 2
        assert authority.verify(_token("k1", "still-verified")).user_id == "still-verified"

    _run(scenario, "k1")


def test_the_refresh_task_runs_in_the_lifespan_and_ends_with_it() -> None:
    with JwksProvider() as idp:
        idp.add("k1")
        token = idp.sign({"sub": "lifespan-user", "exp": int(time.time()) + 600}, "k1")

        async def main() -> None:
            baseline = {task.get_name() for task in asyncio.all_tasks()}
            guard = WSGuard(Settings(jwks_urls=(idp.url,), drain_timeout=1))
            async with guard.lifespan():
                names = {task.get_name() for task in asyncio.all_tasks()}
                assert f"wsguard jwks {idp.url}" in names
                identity = await guard.tokens.verify_fetching(token)
                assert identity.user_id == "lifespan-user"
            await asyncio.sleep(0)
            assert {task.get_name() for task in asyncio.all_tasks()} == baseline

        asyncio.run(main())
    assert idp.fetches == 1


def test_keys_are_refreshed_after_max_age_without_a_token_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds and the interval scaled down from a minute and 5 s, so that it takes seconds."""
    monkeypatch.setattr(jwks_url, "MAX_AGE_BOUNDS", (0.5, 86400.0))
    monkeypatch.setattr(jwks_url, "MIN_REFETCH_SECONDS", 0.2)

    async def scenario(source: JwksUrl, authority: TokenAuthority, provider: Provider) -> None:
        provider.kids = ["k2"]
        await asyncio.sleep(1.5)
        assert provider.requests == 2, "refreshed after max-age=1"
        assert authority.verify(_token("k2", "refreshed")).user_id == "refreshed"
        with pytest.raises(Unauthorized):
            authority.verify(_token("k1", "removed"))

    _run(scenario, "k1", cache_control="public, max-age=1")
