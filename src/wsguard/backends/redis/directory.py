"""The cluster as Redis sees it: presence from the leases, and the instances' own reports.

Reads only: admission and renewal stay in the Lua scripts. A lease counts while its expiry (in
Redis's clock) is ahead, exactly as admission counts it.
"""

import json
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from wsguard.backends.base import BackendUnavailable
from wsguard.backends.presence import InstanceInfo, LeasedConnection
from wsguard.backends.redis.decisions import command_payload, disconnect_payload
from wsguard.backends.redis.keyspace import Keys
from wsguard.backends.redis.topology import Client

_DOWN = (RedisError, RedisClusterException, OSError)


def live_leases(user_id: str, fields: Mapping[bytes, bytes], now_ms: int) -> list[LeasedConnection]:
    """The leases of a user's hash that have not expired at ``now_ms``, oldest first."""
    found: list[tuple[int, LeasedConnection]] = []
    for field, value in fields.items():
        parts = _text(value).split(" ")
        if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        expires_ms, admitted_us, instance_id, session_id = parts
        if int(expires_ms) <= now_ms:
            continue
        admitted = int(admitted_us)
        found.append(
            (admitted, LeasedConnection(_text(field), user_id, instance_id, session_id, admitted / 1e6))
        )
    return [lease for _, lease in sorted(found, key=lambda pair: (pair[0], pair[1].connection_id))]


class RedisDirectory:
    """:class:`~wsguard.backends.presence.ClusterDirectory` on the backend's Redis client."""

    def __init__(
        self, client: Client, keys: Keys, instance_id: str, publish_command: str = "PUBLISH"
    ) -> None:
        self._client = client
        self._keys = keys
        self._instance_id = instance_id
        self._publish_command = publish_command

    @property
    def instance_id(self) -> str:
        return self._instance_id

    async def _now_ms(self) -> int:
        seconds, micros = await self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def leases_of(self, user_id: str) -> list[LeasedConnection]:
        try:
            fields: dict[bytes, bytes] = await self._client.hgetall(self._keys.leases(user_id))  # type: ignore[assignment]
            return live_leases(user_id, fields, await self._now_ms())
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error

    async def lease_counts(self) -> dict[str, dict[str, int]]:
        try:
            now_ms = await self._now_ms()
            keys = [_text(k) async for k in self._client.scan_iter(self._keys.lease_pattern(), count=500)]
            counts: dict[str, dict[str, int]] = {}
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                async with self._client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.hgetall(key)
                    replies: list[Any] = await pipe.execute()
                for key, fields in zip(batch, replies, strict=True):
                    user_id = self._keys.user_of_leases(key)
                    per_instance: dict[str, int] = {}
                    for lease in live_leases(user_id, fields, now_ms):
                        per_instance[lease.instance_id] = per_instance.get(lease.instance_id, 0) + 1
                    if per_instance:
                        counts[user_id] = per_instance
            return counts
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error

    async def instances(self) -> list[InstanceInfo]:
        try:
            keys = [_text(k) async for k in self._client.scan_iter(self._keys.instance_pattern(), count=100)]
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                values: list[Any] = await pipe.execute() if keys else []
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error
        found: list[InstanceInfo] = []
        for value in values:
            if value is None:
                continue
            try:
                found.append(InstanceInfo.from_json(json.loads(_text(value))))
            except (ValueError, KeyError, TypeError):
                continue
        return sorted(found, key=lambda info: (info.started_at, info.instance_id))

    async def register(self, info: InstanceInfo, ttl: float) -> None:
        body = json.dumps(info.as_json(), separators=(",", ":"))
        try:
            await self._client.set(self._keys.instance(info.instance_id), body, px=max(1, round(ttl * 1000)))
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error

    async def unregister(self, instance_id: str) -> None:
        try:
            await self._client.delete(self._keys.instance(instance_id))
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error

    async def disconnect(self, instance_id: str, connection_id: str) -> bool:
        return await self._control(instance_id, disconnect_payload(connection_id))

    async def forward_command(self, instance_id: str, connection_id: str, user_id: str, text: str) -> bool:
        return await self._control(instance_id, command_payload(connection_id, user_id, text))

    async def _control(self, instance_id: str, payload: str) -> bool:
        """Publish on the instance's control channel; whether an instance listens there."""
        try:
            listeners = await self._client.execute_command(
                self._publish_command, self._keys.control(instance_id), payload
            )
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error
        return bool(listeners)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
