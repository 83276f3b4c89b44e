"""The publisher's HTTP transports: ``POST /api/publish`` with httpx (blocking or asyncio), for a
server on the memory backend. The body and the reading of the answer are
:mod:`wsguard.publisher.plan`'s."""

from collections.abc import Sequence

import httpx

from wsguard.core.publication import BrokerUnavailable, Publication
from wsguard.publisher.plan import PUBLISH_PATH, PublisherOptions, http_body, http_offsets


def credentials(api_key: str | None, token: str | None) -> dict[str, str]:
    """``X-API-Key`` for an API key (``--api-key``), else ``Authorization: Bearer`` for an admin JWT."""
    if (api_key is None) == (token is None):
        raise ValueError("publishing over HTTP needs exactly one of api_key= and token=")
    return {"X-API-Key": api_key} if api_key is not None else {"Authorization": f"Bearer {token}"}


def _unavailable(url: str, error: httpx.HTTPError) -> BrokerUnavailable:
    return BrokerUnavailable(f"{url} did not take the events: {error!r}")


class SyncHttp:
    def __init__(self, url: str, options: PublisherOptions, headers: dict[str, str]) -> None:
        self._url = url
        self._http = httpx.Client(base_url=url, timeout=options.timeout, headers=headers)

    def send(self, items: Sequence[Publication]) -> list[int | None]:
        try:
            response = self._http.post(PUBLISH_PATH, json=http_body(items))
        except httpx.HTTPError as error:
            raise _unavailable(self._url, error) from error
        return http_offsets(len(items), response.status_code, response.text)

    def close(self) -> None:
        self._http.close()


class AsyncHttp:
    def __init__(self, url: str, options: PublisherOptions, headers: dict[str, str]) -> None:
        self._url = url
        self._http = httpx.AsyncClient(base_url=url, timeout=options.timeout, headers=headers)

    async def send(self, items: Sequence[Publication]) -> list[int | None]:
        try:
            response = await self._http.post(PUBLISH_PATH, json=http_body(items))
        except httpx.HTTPError as error:
            raise _unavailable(self._url, error) from error
        return http_offsets(len(items), response.status_code, response.text)

    async def aclose(self) -> None:
        await self._http.aclose()
