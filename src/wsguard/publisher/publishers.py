""":class:`Publisher` (blocking) and :class:`AsyncPublisher` (asyncio): the same checks, the same
batches and the same answers (:mod:`wsguard.publisher.plan`), over Redis or HTTP."""

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from wsguard.core.frames import JSON
from wsguard.core.publication import IDEMPOTENCY_SECONDS, Publication
from wsguard.publisher.plan import PublisherOptions, PublishItem, chunks, prepare
from wsguard.redis_url import PLAIN_PREFIXES, is_cluster_url, is_sentinel_url, redact_url

HTTP_PREFIXES = ("http://", "https://")


class SyncTransport(Protocol):
    def send(self, items: Sequence[Publication]) -> list[int | None]: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, items: Sequence[Publication]) -> list[int | None]: ...

    async def aclose(self) -> None: ...


def _is_redis(url: str) -> bool:
    return url.startswith(PLAIN_PREFIXES) or is_sentinel_url(url) or is_cluster_url(url)


def _options(url: str, api_key: str | None, token: str | None, **given: Any) -> PublisherOptions:
    if not (_is_redis(url) or url.startswith(HTTP_PREFIXES)):
        raise ValueError(
            "a publisher URL is redis://, rediss://, redis-sentinel://, redis-cluster://, http:// or "
            f"https://, got {redact_url(url)!r}"
        )
    if _is_redis(url) and (api_key is not None or token is not None):
        raise ValueError(
            "api_key= and token= are for http(s):// URLs; a Redis URL carries its own credentials"
        )
    return PublisherOptions(**given)


def _item(
    user_id: str,
    thread_id: str | None,
    event: str,
    data: JSON | None,
    run_id: str | None,
    request_id: str | None,
    idempotency_key: str | None,
) -> PublishItem:
    return PublishItem(
        user_id, thread_id, event, data if data is not None else {}, run_id, request_id, idempotency_key
    )


class Publisher:
    """Publishes events to wsguard users from a process without an event loop (Celery, RQ,
    scripts). Thread-safe; create one per process (after a fork) and keep it.

    Every event is checked before it is sent (:class:`InvalidEvent`, :class:`EventTooLarge`);
    one the broker did not take within ``timeout`` raises :class:`BrokerUnavailable`, never
    passes silently. With ``idempotency_key``, a retry returns the first publish's offset and
    the event is delivered once.
    """

    def __init__(self, transport: SyncTransport, options: PublisherOptions) -> None:
        self._transport = transport
        self.options = options

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        max_message_bytes: int = 65536,
        timeout: float = 5.0,
        idempotency_window: float = IDEMPOTENCY_SECONDS,
        retention_events: int = 1000,
        retention_seconds: float = 300.0,
        prefix: str = "wsguard",
    ) -> "Publisher":
        """``redis://``, ``rediss://``, ``redis-sentinel://`` or ``redis-cluster://`` (the servers'
        ``--backend``: give their ``--retention-*`` and ``--max-message-bytes`` when not the
        defaults), or ``http(s)://HOST`` of a server with ``api_key=`` (or an admin ``token=``)."""
        options = _options(
            url,
            api_key,
            token,
            max_message_bytes=max_message_bytes,
            timeout=timeout,
            idempotency_window=idempotency_window,
            retention_events=retention_events,
            retention_seconds=retention_seconds,
            prefix=prefix,
        )
        if url.startswith(HTTP_PREFIXES):
            from wsguard.publisher.http_io import SyncHttp, credentials

            return cls(SyncHttp(url, options, credentials(api_key, token)), options)
        from wsguard.extras import require_redis

        require_redis("publishing through Redis")
        from wsguard.publisher.redis_io import SyncRedis

        return cls(SyncRedis(url, options), options)

    def publish(
        self,
        user_id: str,
        thread_id: str | None,
        event: str,
        data: JSON | None = None,
        *,
        run_id: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> int | None:
        """The event's offset in its thread; None for a user-level event (``thread_id`` None)."""
        item = _item(user_id, thread_id, event, data, run_id, request_id, idempotency_key)
        return self.publish_many([item])[0]

    def publish_many(self, items: Iterable[PublishItem]) -> list[int | None]:
        """Each event's offset, in order, in one round trip per 1,000 events (on a Redis Cluster,
        per user among them). All are checked before any is sent; when the broker fails part-way,
        :class:`BrokerUnavailable` is raised and some may have been published: retry the batch
        with the same idempotency keys."""
        events = prepare(items, self.options.max_message_bytes)
        offsets: list[int | None] = []
        for chunk in chunks(events):
            offsets += self._transport.send(chunk)
        return offsets

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class AsyncPublisher:
    """:class:`Publisher` for asyncio (Arq, an async worker, a FastAPI background task)."""

    def __init__(self, transport: AsyncTransport, options: PublisherOptions) -> None:
        self._transport = transport
        self.options = options

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        max_message_bytes: int = 65536,
        timeout: float = 5.0,
        idempotency_window: float = IDEMPOTENCY_SECONDS,
        retention_events: int = 1000,
        retention_seconds: float = 300.0,
        prefix: str = "wsguard",
    ) -> "AsyncPublisher":
        """As :meth:`Publisher.from_url`."""
        options = _options(
            url,
            api_key,
            token,
            max_message_bytes=max_message_bytes,
            timeout=timeout,
            idempotency_window=idempotency_window,
            retention_events=retention_events,
            retention_seconds=retention_seconds,
            prefix=prefix,
        )
        if url.startswith(HTTP_PREFIXES):
            from wsguard.publisher.http_io import AsyncHttp, credentials

            return cls(AsyncHttp(url, options, credentials(api_key, token)), options)
        from wsguard.extras import require_redis

        require_redis("publishing through Redis")
        from wsguard.publisher.redis_io import AsyncRedis

        return cls(AsyncRedis(url, options), options)

    async def publish(
        self,
        user_id: str,
        thread_id: str | None,
        event: str,
        data: JSON | None = None,
        *,
        run_id: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> int | None:
        """As :meth:`Publisher.publish`."""
        item = _item(user_id, thread_id, event, data, run_id, request_id, idempotency_key)
        return (await self.publish_many([item]))[0]

    async def publish_many(self, items: Iterable[PublishItem]) -> list[int | None]:
        """As :meth:`Publisher.publish_many`."""
        events = prepare(items, self.options.max_message_bytes)
        offsets: list[int | None] = []
        for chunk in chunks(events):
            offsets += await self._transport.send(chunk)
        return offsets

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
