"""What each wsguard operation costs Redis: commands, bytes and time, as Redis itself counts them.

Usage: ``nice -n 19 .venv/bin/python bench/redis_ops.py [--users 100] [--events 300]`` (Linux;
about 40 s on a busy 2-core machine). The figures feed the sizing model of docs/scaling.md.

It starts a private redis-server and wsguard instances on it (loopback), puts them through one
kind of operation at a time and reads Redis's own counters around each: ``INFO commandstats``
(calls per command; a script's EVALSHA and each command it runs inside are all counted there)
and ``INFO stats`` (``total_net_input_bytes``, ``total_net_output_bytes``); then ``MEMORY
USAGE`` of a user's keys. The slow log, set to log every command, tells a command an instance
sent from one a script ran (its client is ``?:0``) and which script an EVALSHA ran, so the table
shows what an instance sends (a script counts once) apart from what the scripts do inside. The
counters' own traffic (the INFO requests and replies) is known byte for byte and taken out.
CPU times (Redis's, and instance B's per event it receives) come from ``/proc/PID/task/*/schedstat``:
logging every command costs Redis some, so its CPU figures are upper bounds.

Users: half hold two connections on instance A, half one on A and one on B (1.5 instances per
user). Instances A and B run with a long lease TTL so that no renewal falls inside a measured
window; the renewal is measured on a third instance, C, with a short one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis.cluster_clients import subscribe
from tests.redis.conftest import instance_flags
from tests.redis.test_sharded_delivery import JOINS, LEAVES, RECEIVED, USER_CHANNELS

from wsguard.backends.redis import scripts
from wsguard.backends.redis.keyspace import Keys
from wsguard.processes import ServerProcess, eventually
from wsguard.processes.clients import open_socket, receive, send
from wsguard.processes.redis_server import RedisServer

SCRIPTS = {
    hashlib.sha1(source.encode()).hexdigest(): name
    for name, source in (
        ("admit", scripts.ADMIT),
        ("renew", scripts.RENEW),
        ("publish", scripts.PUBLISH),
        ("read_thread", scripts.READ_THREAD),
        ("restart_thread", scripts.RESTART_THREAD),
    )
}
LONG_TTL = "300"
"""Leases of A and B: renewal every 100 s and the listener's health check every 300 s, so neither
falls inside a window."""
QUIET = 0.25
"""Seconds with no command from any instance that end a window."""
ACTIVE = "wsguard_connections_active"
GATE = 16
"""Connections opened at once."""
IN_FLIGHT = 8
"""Publish requests at once."""
SIMPLE = "reference: SET, one at a time from one client"
PACED_RATE = 5000
"""Events a second published for instance B's CPU at a steady rate (about what each instance
receives in the sizing model of docs/scaling.md)."""
PACED_TICK = 0.005
SUMMARY = "x" * 120
"""The event's data: about what an agent's ``tool_completed`` carries."""


def event_data(n: int) -> dict[str, Any]:
    return {"n": n, "tool": "search", "status": "ok", "summary": SUMMARY}


# Redis's counters


@dataclass
class Snapshot:
    net_in: int
    net_out: int
    mine_in: int
    mine_out: int
    calls: Counter[str]


def parse_info(text: str) -> tuple[dict[str, str], Counter[str]]:
    """The ``key:value`` fields, and the calls of every ``cmdstat_`` line."""
    fields: dict[str, str] = {}
    calls: Counter[str] = Counter()
    for line in text.splitlines():
        if ":" not in line or line.startswith("#"):
            continue
        key, value = line.split(":", 1)
        if key.startswith("cmdstat_"):
            stats = dict(part.split("=", 1) for part in value.split(","))
            calls[key.removeprefix("cmdstat_")] = int(stats["calls"])
        else:
            fields[key] = value
    return fields, calls


class Counters:
    """Snapshots of Redis's counters over a raw socket whose own bytes are counted here.

    Redis counts a request's bytes when it reads it (so a snapshot includes its own request) and
    a reply's bytes when it writes it (so a snapshot excludes its own reply)."""

    REQUEST = b"*3\r\n$4\r\nINFO\r\n$5\r\nstats\r\n$12\r\ncommandstats\r\n"

    def __init__(self, server: RedisServer) -> None:
        self._socket = socket.create_connection(("127.0.0.1", server.port))
        self._reader = self._socket.makefile("rb")
        self.admin = server.client()
        self._mine_in = 0
        self._mine_out = 0
        self._pid = server.process.pid if server.process else 0
        self.taken = 0
        address = self._bulk(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n")
        mine = next(p for p in address.decode().split() if p.startswith("addr="))
        self.raw_address = mine.removeprefix("addr=")
        self.addresses = {self.raw_address, _address_of(self.admin)}

    def _bulk(self, request: bytes) -> bytes:
        """Send one command; its bulk string reply. Both are counted as this process's traffic."""
        self._socket.sendall(request)
        self._mine_in += len(request)
        header = self._reader.readline()
        assert header.startswith(b"$"), header
        body = self._reader.read(int(header[1:]) + 2)
        self._mine_out += len(header) + len(body)
        return body[:-2]

    def cpu(self) -> float:
        return cpu_seconds(self._pid)

    def snapshot(self) -> Snapshot:
        self.taken += 1
        mine_in, mine_out = self._mine_in + len(self.REQUEST), self._mine_out
        fields, calls = parse_info(self._bulk(self.REQUEST).decode())
        calls.pop("info", None)
        return Snapshot(
            int(fields["total_net_input_bytes"]),
            int(fields["total_net_output_bytes"]),
            mine_in,
            mine_out,
            calls,
        )

    async def quiet(self, rounds: int = 2) -> Snapshot:
        """The first snapshot after which no command arrived for :data:`QUIET` seconds, ``rounds``
        times in a row (once where an instance's timers run every second)."""
        last = self.snapshot()
        still = 0
        while still < rounds:
            await asyncio.sleep(QUIET)
            now = self.snapshot()
            moved = now.calls != last.calls or now.net_in - last.net_in != now.mine_in - last.mine_in
            still = 0 if moved else still + 1
            last = now
        return last

    def close(self) -> None:
        self._reader.close()
        self._socket.close()
        self.admin.close()


def _address_of(client: Redis) -> str:
    info: dict[str, Any] = client.client_info()
    return str(info["addr"])


@dataclass
class Entry:
    """One command in the slow log: who sent it, what it was, how long Redis took."""

    command: str
    inner: bool
    address: str
    micros: int


def slow_log(admin: Redis) -> list[Entry]:
    """Every command logged since the last reset, oldest first; then reset it."""
    raw: list[dict[str, Any]] = admin.slowlog_get(-1)
    admin.slowlog_reset()
    entries = []
    for item in sorted(raw, key=lambda e: int(e["id"])):
        address = _text(item.get("client_address", b""))
        entries.append(Entry(_text(item["command"]), address == "?:0", address, int(item["duration"])))
    return entries


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def op_name(command: str) -> str:
    """``EVALSHA admit``, ``SCRIPT EXISTS``, ``SET instance report``, or the command's name."""
    words = command.split(" ")
    name = words[0].upper()
    if name == "EVALSHA" and len(words) > 1:
        return f"EVALSHA {SCRIPTS.get(words[1], words[1][:8])}"
    if name in ("SCRIPT", "CLIENT", "CONFIG") and len(words) > 1:
        return f"{name} {words[1].upper()}"
    if name == "SET" and len(words) > 1 and ":instance:" in words[1]:
        return "SET instance report"
    if name == "PING":
        return "PING health check"
    return name


# Windows


@dataclass
class Row:
    """One kind of operation, summed over its windows."""

    label: str
    count: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    inside: Counter[str] = field(default_factory=Counter)
    micros: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    traffic: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    acting: float = 0.0
    """Seconds of the actions alone, without the quiet moments that close the windows."""
    cpu: float = 0.0
    """CPU seconds of the watched instance over the actions."""
    redis_cpu: float = 0.0
    """CPU seconds of redis-server over the windows, less its idle rate and the snapshots' cost."""

    def per(self, value: float) -> float:
        return value / self.count if self.count else 0.0


class Meter:
    """Measures windows: one kind of operation at a time, with nothing else going on."""

    def __init__(self, counters: Counters, instances: Sequence[ServerProcess]) -> None:
        self.counters = counters
        self.instances = list(instances)
        self.rows: dict[str, Row] = {}
        self.snapshot_cpu = 0.0
        self.idle_cpu = 0.0

    async def calibrate(self) -> None:
        """Redis's CPU for one snapshot, and per second with nothing to do (its timers)."""
        busy = self.counters.cpu()
        for _ in range(40):
            self.counters.snapshot()
        self.snapshot_cpu = (self.counters.cpu() - busy) / 40
        busy, started = self.counters.cpu(), time.monotonic()
        await asyncio.sleep(1.0)
        self.idle_cpu = (self.counters.cpu() - busy) / (time.monotonic() - started)

    def traffic(self) -> Counter[str]:
        """Events received from Redis, users' channels joined and left, summed over the instances."""
        total: Counter[str] = Counter()
        for instance in self.instances:
            metrics = instance.metrics()
            total.update({name: int(metrics[name]) for name in (RECEIVED, JOINS, LEAVES)})
        return total

    async def measure(
        self,
        label: str,
        count: int,
        action: Callable[[], Awaitable[None]],
        rounds: int = 2,
        watch: ServerProcess | None = None,
    ) -> Row:
        """Run ``action`` (``count`` operations of one kind) between two quiet moments of Redis;
        with ``watch``, note that instance's CPU time over the same span."""
        await self.counters.quiet(rounds)
        slow_log(self.counters.admin)
        traffic = self.traffic()
        start = self.counters.snapshot()
        redis_busy, taken = self.counters.cpu(), self.counters.taken
        busy = cpu_seconds(watch.pid) if watch else 0.0
        started = time.monotonic()
        await action()
        cpu = cpu_seconds(watch.pid) - busy if watch else 0.0
        acting = time.monotonic() - started
        end = await self.counters.quiet(rounds)
        seconds = time.monotonic() - started
        redis_cpu = self.counters.cpu() - redis_busy
        redis_cpu -= (self.counters.taken - taken) * self.snapshot_cpu + seconds * self.idle_cpu
        entries = slow_log(self.counters.admin)
        row = self.rows.setdefault(label, Row(label))
        row.count += count
        row.seconds += seconds
        row.acting += acting
        row.cpu += cpu
        row.redis_cpu += redis_cpu
        row.traffic.update(self.traffic() - traffic)
        row.calls.update(end.calls - start.calls)
        row.bytes_in += (end.net_in - start.net_in) - (end.mine_in - start.mine_in)
        row.bytes_out += (end.net_out - start.net_out) - (end.mine_out - start.mine_out)
        mine = [n for n, e in enumerate(entries) if e.address == self.counters.raw_address]
        for entry in entries[mine[0] : mine[-1]]:  # from the first snapshot to the last
            if entry.address in self.counters.addresses:
                continue
            name = op_name(entry.command)
            if entry.inner:
                row.inside[name] += 1
            else:
                row.sent[name] += 1
                row.micros[name] += entry.micros
        logged = sum(row.sent.values()) + sum(row.inside.values())
        counted = sum(row.calls.values())
        if logged != counted:
            print(f"warning: {label}: the slow log has {logged} commands, commandstats {counted}")
        return row


# Clients


async def open_many(instance: ServerProcess, tokens: Sequence[str]) -> list[ClientConnection]:
    gate = asyncio.Semaphore(GATE)

    async def one(token: str) -> ClientConnection:
        async with gate:
            socket, _ = await open_socket(instance.ws_url, token, ping_interval=None)
            return socket

    return list(await asyncio.gather(*(one(t) for t in tokens)))


async def subscribe_all(sockets: Sequence[ClientConnection], thread_id: str) -> None:
    gate = asyncio.Semaphore(GATE)

    async def one(socket: ClientConnection) -> None:
        async with gate:
            await subscribe(socket, thread_id)

    await asyncio.gather(*(one(s) for s in sockets))


async def unsubscribe_all(sockets: Sequence[ClientConnection], thread_id: str) -> None:
    async def one(socket: ClientConnection) -> None:
        await send(socket, type="unsubscribe", thread_id=thread_id)
        while (await receive(socket))["type"] != "unsubscribed":
            pass

    await asyncio.gather(*(one(s) for s in sockets))


async def close_all(sockets: Sequence[ClientConnection]) -> None:
    await asyncio.gather(*(s.close() for s in sockets))


async def read_events(socket: ClientConnection, count: int, sizes: list[int]) -> None:
    """Read ``count`` event frames, noting each one's size on the wire (its JSON text)."""
    for _ in range(count):
        async with asyncio.timeout(30):
            text = await socket.recv(decode=True)
        frame = json.loads(text)
        assert frame["type"] == "event", frame
        sizes.append(len(text.encode()))


async def publish_many(http: httpx.AsyncClient, events: Sequence[tuple[str, str | None, int]]) -> None:
    """POST every event (user, thread or None, n), :data:`IN_FLIGHT` at a time."""
    queue = list(reversed(events))

    async def worker() -> None:
        while queue:
            user_id, thread_id, n = queue.pop()
            body = {"user_id": user_id, "thread_id": thread_id, "event": "e", "data": event_data(n)}
            response = await http.post("/api/publish", json=body)
            assert response.status_code == 200, response.text

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def captured(admin: Redis, channel: str, publish: Callable[[], None]) -> bytes:
    """The payload of the next message on ``channel`` once ``publish`` ran: what instances get."""
    where = admin.connection_pool.connection_kwargs
    listening = Redis(host=where["host"], port=where["port"])  # not the admin's connection
    with listening, listening.pubsub() as pubsub:  # type: ignore[no-untyped-call, unused-ignore]  # untyped in redis-py
        pubsub.subscribe(channel)
        while True:
            message = pubsub.get_message(timeout=5)
            if message is not None and message["type"] == "subscribe":
                break
        publish()
        while True:
            message = pubsub.get_message(timeout=5)
            if message is not None and message["type"] == "message":
                data: bytes = message["data"]
                return data


async def burst(
    admin: Redis,
    a: ServerProcess,
    user_id: str,
    on_b: ClientConnection,
    on_a: ClientConnection,
    b: ServerProcess,
    idle_rate: float,
    extras: Extras,
    count: int = 1000,
) -> None:
    """B's CPU per event when events come back to back (as at a high event rate): real messages,
    captured once, published again ``count`` times in one pipeline. A thread event nobody there
    subscribes to is dropped after parsing, as every instance dropped most events when all of them
    listened on one channel; a user-level event goes to the user's one connection there."""
    headers = a.auth("operator", admin=True)

    def publish(thread_id: str | None) -> Callable[[], None]:
        body = {"user_id": user_id, "thread_id": thread_id, "event": "e", "data": event_data(0)}

        def post() -> None:
            a.http.post("/api/publish", headers=headers, json=body).raise_for_status()

        return post

    channel = Keys().user_events(user_id)
    dropped = captured(admin, channel, publish("other"))
    user_level = captured(admin, channel, publish(None))
    await asyncio.gather(read_events(on_b, 1, []), read_events(on_a, 1, []))

    async def timed(payloads: list[bytes], frames: int) -> float:
        """B's CPU per payload, less its idle rate, until its connection has ``frames`` frames."""
        busy, started = cpu_seconds(b.pid), time.monotonic()
        with admin.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(channel, payload)
            pipe.execute()
        reading = asyncio.gather(read_events(on_a, frames, []))  # A holds the user too
        await read_events(on_b, frames, [])
        spent = cpu_seconds(b.pid) - busy - idle_rate * (time.monotonic() - started)
        await reading
        return spent / len(payloads)

    extras.cpu["burst, not delivered"] = await timed([dropped] * count + [user_level], 1)
    extras.cpu["burst, delivered"] = await timed([user_level] * count, count)
    extras.cpu["burst count"] = count

    # Paced: about PACED_RATE a second for a second, in small batches, as a busy instance gets them.
    busy, started, sent = cpu_seconds(b.pid), time.monotonic(), 0
    while (now := time.monotonic() - started) < 1.0:
        batch = round(PACED_RATE * (now + PACED_TICK)) - sent  # on schedule, however late the tick
        with admin.pipeline(transaction=False) as pipe:
            for _ in range(batch):
                pipe.publish(channel, dropped)
            pipe.execute()
        sent += batch
        await asyncio.sleep(PACED_TICK)
    admin.publish(channel, user_level)
    reading = asyncio.gather(read_events(on_a, 1, []))
    await read_events(on_b, 1, [])
    elapsed = time.monotonic() - started
    extras.cpu["paced, not delivered"] = (cpu_seconds(b.pid) - busy - idle_rate * elapsed) / sent
    extras.cpu["paced rate"] = sent / elapsed
    await reading


def memory_usage(admin: Redis, x_users: Sequence[str], extras: Extras) -> None:
    """What Redis holds for a user with two connections and a thread with many events and few."""
    keys = Keys()

    def usage(key: str) -> int:
        return int(admin.memory_usage(key, samples=0) or 0)

    deep, shallow = keys.thread_log(x_users[0], "t"), keys.thread_log(x_users[1], "t")
    lengths = int(admin.xlen(deep)), int(admin.xlen(shallow))
    extras.memory = {
        "leases of a user with 2 connections": usage(keys.leases(x_users[0])),
        "thread meta": usage(keys.thread_meta(x_users[0], "t")),
        "deep stream length": lengths[0],
        "deep stream": usage(deep),
        "shallow stream length": lengths[1],
        "shallow stream": usage(shallow),
        "per retained event": (usage(deep) - usage(shallow)) / (lengths[0] - lengths[1]),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of a process, to the nanosecond (Linux's schedstat; the tick-based
    counters of ``psutil`` are 10 ms coarse, more than a few hundred events cost)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


# The run


@dataclass
class Extras:
    """Figures beside the table."""

    frame_bytes: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    renewal: dict[str, dict[str, float]] = field(default_factory=dict)
    idle: dict[str, float] = field(default_factory=dict)
    idle_ops: dict[str, int] = field(default_factory=dict)
    redis_version: str = ""
    memory: dict[str, float] = field(default_factory=dict)
    calibration: tuple[float, float] = (0.0, 0.0)


async def deliveries(
    meter: Meter,
    http: httpx.AsyncClient,
    label: str,
    events: Sequence[tuple[str, str | None, int]],
    readers: list[tuple[ClientConnection, int]],
    extras: Extras,
    watch: ServerProcess | None = None,
) -> Row:
    async def action() -> None:
        reading = asyncio.gather(*(read_events(s, n, extras.frame_bytes) for s, n in readers if n))
        await publish_many(http, events)
        await reading

    return await meter.measure(label, len(events), action, watch=watch)


async def measured_run(
    meter: Meter, a: ServerProcess, b: ServerProcess, users: int, events: int, extras: Extras
) -> None:
    """Every operation but renewal, on A and B."""
    meter.instances = [a, b]
    half = users // 2
    x_users = [f"x{n}" for n in range(half)]
    y_users = [f"y{n}" for n in range(half)]
    tokens = {u: a.token(u) for u in [*x_users, *y_users, "warm"]}
    admin = {"Authorization": f"Bearer {a.token('operator', admin=True)}"}
    async with httpx.AsyncClient(base_url=a.base_url, headers=admin, timeout=30) as http:
        # Warm up: pools filled, scripts loaded, the user-level epoch created.
        for instance in (a, b):
            warm = await open_many(instance, [tokens["warm"]] * GATE)
            await subscribe_all(warm, "warm")
            await publish_many(http, [("warm", "warm", n) for n in range(2 * IN_FLIGHT)])
            await publish_many(http, [("warm", None, 0)])
            await asyncio.gather(*(read_events(s, 2 * IN_FLIGHT + 1, []) for s in warm))
            await close_all(warm)
            eventually(instance.metrics, lambda m: m[USER_CHANNELS] == 0, timeout=10, what="warm-up gone")
        await meter.calibrate()
        extras.calibration = (meter.snapshot_cpu, meter.idle_cpu)

        first_a: list[ClientConnection] = []

        async def connect_first_a() -> None:
            first_a.extend(await open_many(a, [tokens[u] for u in [*x_users, *y_users]]))

        await meter.measure("connect: the user's first connection on the instance", users, connect_first_a)
        await subscribe_all(first_a, "t")  # creates each thread's epoch, outside the windows

        second_a: list[ClientConnection] = []
        on_b: list[ClientConnection] = []

        async def connect_second_a() -> None:
            second_a.extend(await open_many(a, [tokens[u] for u in x_users]))

        async def connect_b() -> None:
            on_b.extend(await open_many(b, [tokens[u] for u in y_users]))

        await meter.measure("connect: a further connection of a user already there", half, connect_second_a)
        await meter.measure("connect: the user's first connection on the instance", half, connect_b)

        async def subscribe_rest() -> None:
            await subscribe_all([*second_a, *on_b], "t")

        await meter.measure("subscribe to a thread (no `since`)", 2 * half, subscribe_rest)
        # Create the threads nobody subscribes to, outside the windows.
        await publish_many(http, [(u, "other", 0) for u in y_users])

        # Every other event to x0, so that its stream shows what one more retained event costs.
        x_events = [(x_users[0 if n % 2 else (n // 2) % half], "t", n) for n in range(events)]
        y_events = [(y_users[n % half], "t", n) for n in range(events)]
        per_user = Counter(u for u, _, _ in x_events)
        x_readers = [(s, per_user[u]) for s, u in zip([*first_a[:half], *second_a], x_users * 2, strict=True)]
        await deliveries(meter, http, "thread event, user on 1 instance (2 connections)", x_events,
                         x_readers, extras)  # fmt: skip
        per_user = Counter(u for u, _, _ in y_events)
        y_sockets = [*first_a[half:], *on_b]
        y_readers = [(s, per_user[u]) for s, u in zip(y_sockets, y_users * 2, strict=True)]
        idle_started, idle = time.monotonic(), cpu_seconds(b.pid)
        await asyncio.sleep(1.0)
        idle_rate = (cpu_seconds(b.pid) - idle) / (time.monotonic() - idle_started)
        extras.cpu["idle per second"] = idle_rate
        row = await deliveries(meter, http, "thread event, user on 2 instances (1 connection each)",
                               y_events, y_readers, extras, watch=b)  # fmt: skip
        extras.cpu["delivered"] = (row.cpu - idle_rate * row.acting) / events

        async def undelivered() -> None:
            # The last event is on a subscribed thread: once it arrives, B has taken those before.
            marker = asyncio.create_task(read_events(on_b[-1], 1, []))
            other = [(y_users[n % half], "other", n) for n in range(events)]
            await publish_many(http, [*other, (y_users[-1], "t", -1)])
            await marker
            await asyncio.wait_for(receive(first_a[-1]), 30)

        label = "thread event nobody subscribes to, user on 2 instances"
        row = await meter.measure(label, events + 1, undelivered, watch=b)  # and the marker
        extras.cpu["received, not delivered"] = (row.cpu - idle_rate * row.acting) / events

        memory_usage(meter.counters.admin, x_users, extras)
        await burst(meter.counters.admin, a, y_users[0], on_b[0], first_a[half], b, idle_rate, extras)
        user_events: list[tuple[str, str | None, int]] = [(y_users[n % half], None, n) for n in range(events)]
        await deliveries(meter, http, "user-level event, user on 2 instances (1 connection each)",
                         user_events, y_readers, extras)  # fmt: skip

        all_sockets = [*first_a, *second_a, *on_b]

        async def unsubscribe() -> None:
            await unsubscribe_all(all_sockets, "t")

        await meter.measure("unsubscribe from a thread", len(all_sockets), unsubscribe)

        async def close_further() -> None:
            await close_all(second_a)
            eventually(a.metrics, lambda m: m[ACTIVE] == users, timeout=10,
                       what="the further connections released")  # fmt: skip

        await meter.measure("close: not the user's last connection on the instance", half, close_further)

        async def close_last() -> None:
            await close_all([*first_a, *on_b])
            for instance in (a, b):
                eventually(instance.metrics, lambda m: m[USER_CHANNELS] == m[ACTIVE] == 0, timeout=10,
                           what="every channel left")  # fmt: skip

        await meter.measure("close: the user's last connection on the instance", users + half, close_last)
        await simple_requests(meter, events)


async def simple_requests(meter: Meter, count: int) -> None:
    """A yardstick: ``count`` plain SETs from one client, each waiting for its reply, so that each
    operation above reads as so many simple requests of this Redis on this machine."""
    where = meter.counters.admin.connection_pool.connection_kwargs
    with Redis(host=where["host"], port=where["port"]) as client:
        client.ping()

        async def sets() -> None:
            for n in range(count):
                client.set("wsguard:bench:simple", n)

        await meter.measure(SIMPLE, count, sets)
        client.delete("wsguard:bench:simple")


RENEWAL_OPS = ("SCRIPT EXISTS", "EVALSHA renew")


def per_cycle(held: Row, idle: Row, connections: int) -> dict[str, float]:
    """One renewal cycle's figures from a window holding ``connections``, less what the idle
    window shows an instance does anyway (its report and health check), op for op."""
    cycles = held.sent["SCRIPT EXISTS"]
    background = sum(n for name, n in held.sent.items() if name not in RENEWAL_OPS)
    idle_ops = sum(idle.sent.values()) or 1
    return {
        "connections": connections,
        "cycles": cycles,
        "seconds": held.seconds,
        "script exists": held.sent["SCRIPT EXISTS"] / cycles,
        "evalsha renew": held.sent["EVALSHA renew"] / cycles,
        "inside": sum(held.inside.values()) / cycles,
        "hset inside": held.inside["HSET"] / cycles,
        "micros": sum(held.micros[n] for n in RENEWAL_OPS) / cycles,
        "cpu": (held.redis_cpu - idle.redis_cpu * held.seconds / idle.seconds) / cycles,
        "bytes in": (held.bytes_in - background * idle.bytes_in / idle_ops) / cycles,
        "bytes out": (held.bytes_out - background * idle.bytes_out / idle_ops) / cycles,
    }


async def renewal(meter: Meter, c: ServerProcess, users: int, ttl: float, extras: Extras) -> None:
    """The lease heartbeat on C (renewal every ``ttl / 3``): an idle window, then the same window
    holding ``users`` x 2 connections, then ``users`` x 1; each window spans three periods."""
    meter.instances = [c]
    window = ttl

    async def hold() -> None:
        await asyncio.sleep(window)

    idle = await meter.measure("idle instance", 1, hold, rounds=1)
    tokens = [c.token(f"r{n}") for n in range(users)]
    sockets = await open_many(c, tokens * 2)
    await asyncio.sleep(ttl / 2)  # admission is over; the renewals hold them now
    two = await meter.measure("holding two per user", 1, hold, rounds=1)
    await close_all(sockets[users:])
    await asyncio.sleep(ttl / 2)
    one = await meter.measure("holding one per user", 1, hold, rounds=1)
    await close_all(sockets[:users])
    extras.renewal = {
        "two per user": per_cycle(two, idle, 2 * users),
        "one per user": per_cycle(one, idle, users),
    }
    extras.idle = {
        "seconds": idle.seconds,
        "ops per second": sum(idle.sent.values()) / idle.seconds,
        "bytes in per second": idle.bytes_in / idle.seconds,
        "bytes out per second": idle.bytes_out / idle.seconds,
    }
    extras.idle_ops = dict(idle.sent)
    for label in ("idle instance", "holding two per user", "holding one per user"):
        del meter.rows[label]


async def run(users: int, events: int, renewal_ttl: float) -> tuple[list[Row], Extras]:
    extras = Extras()
    slow = ("--slowlog-log-slower-than", "0", "--slowlog-max-len", "1000000")
    quiet = ("--heartbeat-interval", "120", "--heartbeat-timeout", "120", "--log-level", "warning")
    with tempfile.TemporaryDirectory(prefix="wsguard-redis-ops-") as logs, RedisServer(extra=slow) as server:
        counters = Counters(server)
        meter = Meter(counters, [])
        extras.redis_version = str(counters.admin.info("server")["redis_version"])
        try:
            flags = instance_flags(server.url, "--lease-ttl", LONG_TTL, *quiet)
            with (
                ServerProcess(*flags, log_path=Path(logs) / "a.log") as a,
                ServerProcess(*flags, log_path=Path(logs) / "b.log") as b,
            ):
                await measured_run(meter, a, b, users, events, extras)
            flags = instance_flags(server.url, "--lease-ttl", str(renewal_ttl), *quiet)
            with ServerProcess(*flags, log_path=Path(logs) / "c.log") as c:
                await renewal(meter, c, users, renewal_ttl, extras)
        finally:
            counters.close()
    return list(meter.rows.values()), extras


# The report


def breakdown(counts: Counter[str], per: int) -> str:
    return ", ".join(f"{name} {n / per:.2f}" for name, n in counts.most_common()) or "none"


def renewal_line(users: str, r: dict[str, float], unit: float) -> str:
    n = r["connections"]
    return (
        f"Lease renewal, {users} (instance C, {n:.0f} connections, {r['cycles']:.0f} cycles in "
        f"{r['seconds']:.1f} s): per cycle {r['script exists']:.2f} SCRIPT EXISTS + "
        f"{r['evalsha renew']:.2f} EVALSHA renew (one per user held), {r['inside']:.1f} commands "
        f"inside ({r['hset inside']:.1f} HSET), {r['micros']:.0f} µs in Redis (slow log), "
        f"{r['cpu'] * 1e6:.0f} µs of Redis CPU, {r['bytes in']:.0f} B in, {r['bytes out']:.0f} B out; "
        f"per connection: {(r['script exists'] + r['evalsha renew']) / n:.3f} ops, "
        f"{r['cpu'] * 1e6 / n:.1f} µs of Redis CPU ({r['cpu'] / n / unit:.2f} SETs), "
        f"{r['bytes in'] / n:.0f} B in, {r['bytes out'] / n:.0f} B out."
    )


def report(rows: list[Row], extras: Extras, command: str) -> str:
    lines = [
        f"Redis operations per wsguard operation (`{command}`; redis-server {extras.redis_version}, "
        "loopback).",
        "Sent: what instances send (a script's EVALSHA counts once). Inside: what the scripts run.",
        "Bytes: Redis's total_net_input_bytes / total_net_output_bytes (pub/sub deliveries included).",
        "In SETs: the Redis CPU of the operation over that of the last row's plain SET.",
        "",
        "| operation | n | sent per op | inside scripts per op | Redis µs per op (slow log) "
        "| Redis CPU µs per op | in SETs | bytes in | bytes out | deliveries from Redis "
        "| channels joined / left |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    simple = next(row for row in rows if row.label == SIMPLE)
    unit = simple.per(simple.redis_cpu)
    for row in rows:
        sent = sum(row.sent.values())
        lines.append(
            f"| {row.label} | {row.count} | {row.per(sent):.2f}: {breakdown(row.sent, row.count)} "
            f"| {breakdown(row.inside, row.count)} | {row.per(sum(row.micros.values())):.1f} "
            f"| {row.per(row.redis_cpu) * 1e6:.1f} | {row.per(row.redis_cpu) / unit:.2f} "
            f"| {row.per(row.bytes_in):.0f} | {row.per(row.bytes_out):.0f} "
            f"| {row.per(row.traffic[RECEIVED]):.2f} "
            f"| {row.per(row.traffic[JOINS]):.2f} / {row.per(row.traffic[LEAVES]):.2f} |"
        )
    frames = extras.frame_bytes
    m = extras.memory
    i = extras.idle
    lines += [
        "",
        *(renewal_line(users, figures, unit) for users, figures in extras.renewal.items()),
        f"Idle instance (no connection): {i['ops per second']:.2f} ops/s "
        f"({breakdown(Counter(extras.idle_ops), 1)} in {i['seconds']:.1f} s), "
        f"{i['bytes in per second']:.0f} B/s in, {i['bytes out per second']:.0f} B/s out.",
        f"Event frame delivered to a client: {sum(frames) / len(frames):.0f} B of JSON text on average "
        f"({len(frames)} frames).",
        f"Redis memory (MEMORY USAGE): {m['leases of a user with 2 connections']:.0f} B for the leases of a "
        f"user with 2 connections, {m['thread meta']:.0f} B for a thread's meta, a thread's stream "
        f"{m['deep stream']:.0f} B with {m['deep stream length']:.0f} events and "
        f"{m['shallow stream']:.0f} B with {m['shallow stream length']:.0f}: "
        f"{m['per retained event']:.0f} B per retained event.",
        f"Instance B's CPU per event received from Redis: {extras.cpu['delivered'] * 1e6:.0f} µs when "
        f"delivered to one connection, {extras.cpu['received, not delivered'] * 1e6:.0f} µs when no "
        f"connection there subscribes to its thread (its idle {extras.cpu['idle per second'] * 1e3:.1f} "
        "ms of CPU per second taken out of both).",
        f"The same with {extras.cpu['burst count']:.0f} events back to back (one pipeline of PUBLISH "
        f"of real messages): {extras.cpu['burst, delivered'] * 1e6:.0f} µs delivered to one connection, "
        f"{extras.cpu['burst, not delivered'] * 1e6:.0f} µs not delivered; at a steady "
        f"{extras.cpu['paced rate']:,.0f} events/s for 1 s (a batch every {PACED_TICK * 1e3:.0f} ms or so): "
        f"{extras.cpu['paced, not delivered'] * 1e6:.0f} µs not delivered.",
        f"Redis CPU of one INFO snapshot {extras.calibration[0] * 1e6:.0f} µs and idle "
        f"{extras.calibration[1] * 1e3:.2f} ms/s, taken out of the CPU column.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=int, default=100, help="users (even; 1.5 connections each on A and B)"
    )
    parser.add_argument("--events", type=int, default=300, help="events per event window")
    parser.add_argument("--renewal-ttl", type=float, default=3.0, help="instance C's --lease-ttl")
    args = parser.parse_args()
    started = time.monotonic()
    rows, extras = asyncio.run(run(args.users, args.events, args.renewal_ttl))
    print(report(rows, extras, " ".join(["python", *sys.argv])))
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
