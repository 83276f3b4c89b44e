"""Keys fetched from an identity provider's JWKS URL: cached, refreshed, fetched again for a new kid.

One task per URL (started and stopped by the app's lifespan) does every fetch: the periodic
refresh, after the response's ``Cache-Control: max-age`` (held between a minute and a day),
and the fetches that tokens naming an unknown ``kid`` ask for. Those are at most one per
:data:`MIN_REFETCH_SECONDS`, however many tokens ask, and the tokens that ask while one runs
share it, so a flood of made-up kids is not a flood of requests to the provider. A fetch that
fails keeps the keys already known; while none is known, tokens are refused (401).

``jwt.PyJWKClient`` is not used: it fetches synchronously (blocking the loop), fetches again for
every unknown kid without a minimum interval, and has no refresh of its own.
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from wsguard.errors import WSGuardError
from wsguard.server.jwt_keys import VerificationKey, key_by_header, signing_keys
from wsguard.version import __version__

logger = logging.getLogger("wsguard")

MIN_REFETCH_SECONDS = 5.0
"""The least time between two fetches of one URL, whatever asks for them."""
FETCH_TIMEOUT_SECONDS = 5.0
"""A fetch, connection to last byte, that takes longer has failed."""
DEFAULT_MAX_AGE = 300.0
"""Seconds between refreshes when the response says nothing (no ``Cache-Control: max-age``)."""
MAX_AGE_BOUNDS = (60.0, 86400.0)
"""A provider's ``max-age`` is honoured within these (a minute to a day)."""
RETRY_MAX_SECONDS = 60.0
"""After failures, fetches are retried after 5 s, 10 s, 20 s... up to this."""
MAX_JWKS_BYTES = 1 << 20


class FetchError(WSGuardError):
    """The provider answered, but not with something usable."""


def refresh_after(cache_control: str | None, age: str | None = None) -> float:
    """Seconds until the next refresh: ``max-age`` less ``Age``, within :data:`MAX_AGE_BOUNDS`."""
    low, high = MAX_AGE_BOUNDS
    directives = [part.strip().lower() for part in (cache_control or "").split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return low
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age":
            try:
                seconds = int(value.strip().strip('"')) - (int(age) if age and age.isdigit() else 0)
            except ValueError:
                return DEFAULT_MAX_AGE
            return min(max(float(seconds), low), high)
    return DEFAULT_MAX_AGE


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksUrl:
    """A key source (:class:`wsguard.server.jwt_keys.KeySource`) kept up to date from one URL."""

    def __init__(
        self,
        url: str,
        algorithms: tuple[str, ...],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithms = algorithms
        self._transport = transport
        self._clock = clock
        self._keys: dict[str | None, VerificationKey] = {}
        self._task: asyncio.Task[None] | None = None
        self._wanted: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        """Set when the fetch running (or the next one) ends; replaced by a fresh one each time."""
        self._fetching = False
        self._last_attempt = -math.inf
        self._failures = 0
        self.fetches = 0
        """Fetches attempted (for tests and logs)."""

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    def key_for(self, header: dict[str, Any]) -> VerificationKey | None:
        return key_by_header(self._keys, header)

    def want(self) -> None:
        """Ask for a fetch: at once if none began in the last MIN_REFETCH_SECONDS, else then.
        While one runs, asking is moot: the tokens that ask wait for it instead."""
        if self._wanted is not None and not self._fetching:
            self._wanted.set()

    async def refetch(self) -> None:
        """:meth:`want`, and wait for the fetch if it runs now; if it must wait out the minimum
        interval, return at once (the caller is refused; the keys arrive for its next try)."""
        if self._done is None:
            return
        if not self._fetching and self._clock() - self._last_attempt < MIN_REFETCH_SECONDS:
            self.want()
            return
        done = self._done
        self.want()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS + 1):
                await done.wait()

    def start(self) -> None:
        """Start the task that fetches; the first fetch begins at once."""
        if self._task is not None:
            return
        if not self.url.startswith("https://") and not is_loopback(self.url):
            logger.warning(
                "JWKS %s is plain http: anyone on the path could replace its keys; use https://",
                self.url,
            )
        self._wanted, self._done = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"wsguard jwks {self.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._wanted = self._done = None

    async def _run(self) -> None:
        assert self._wanted is not None
        timeout = httpx.Timeout(FETCH_TIMEOUT_SECONDS)
        headers = {"Accept": "application/json", "User-Agent": f"wsguard/{__version__}"}
        async with httpx.AsyncClient(transport=self._transport, timeout=timeout, headers=headers) as client:
            next_in = 0.0
            while True:
                if next_in > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(next_in):
                            await self._wanted.wait()
                await asyncio.sleep(max(0.0, self._last_attempt + MIN_REFETCH_SECONDS - self._clock()))
                self._wanted.clear()
                self._fetching = True
                try:
                    next_in = await self._fetch(client)
                finally:
                    self._fetching = False
                    if self._done is not None:
                        done, self._done = self._done, asyncio.Event()
                        done.set()

    async def _fetch(self, client: httpx.AsyncClient) -> float:
        """One fetch; the seconds until the next one. Never raises (but for cancellation)."""
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                body, cache_control, age = await self._download(client)
            keys = signing_keys(json.loads(body), self.algorithms)
        except TimeoutError:
            return self._failed(f"no answer within {FETCH_TIMEOUT_SECONDS:g}s")
        except (httpx.HTTPError, FetchError, ValueError, RecursionError) as error:
            return self._failed(str(error) or type(error).__name__)
        except Exception as error:
            logger.exception("fetching the keys of %s failed unexpectedly", self.url)
            return self._failed(repr(error))
        self._loaded(keys)
        return refresh_after(cache_control, age)

    async def _download(self, client: httpx.AsyncClient) -> tuple[bytes, str | None, str | None]:
        async with client.stream("GET", self.url) as response:
            if response.status_code != 200:
                raise FetchError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise FetchError(f"a JWKS over {MAX_JWKS_BYTES} bytes")
            return bytes(body), response.headers.get("cache-control"), response.headers.get("age")

    def _loaded(self, keys: dict[str | None, VerificationKey]) -> None:
        changed = set(keys) != set(self._keys)
        if self._failures or changed:
            kids = ", ".join(sorted(str(kid) for kid in keys))
            logger.info("keys from %s: %d (%s)", self.url, len(keys), kids)
        else:
            logger.debug("keys from %s unchanged", self.url)
        self._keys, self._failures = keys, 0

    def _failed(self, reason: str) -> float:
        """Log the first failure of a run as a WARNING (the rest at DEBUG); when to retry."""
        self._failures += 1
        if self._failures == 1:
            kept = (
                f"keeping the {len(self._keys)} keys known"
                if self._keys
                else "tokens are refused (401) until they load"
            )
            logger.warning("cannot fetch the keys of %s: %s; %s", self.url, reason, kept)
        else:
            logger.debug("cannot fetch the keys of %s (attempt %d): %s", self.url, self._failures, reason)
        backoff: float = MIN_REFETCH_SECONDS * 2.0 ** min(self._failures - 1, 8)
        return min(backoff, RETRY_MAX_SECONDS)
