"""What every scenario gets (a context) and gives back (a round result)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from wsguard.leaktest.client import Api, Refused, Tab, open_tab
from wsguard.leaktest.load import LoadMonitor
from wsguard.leaktest.profiles import Profile, Sizes
from wsguard.leaktest.sampling import ResourceSampler

TERMINAL_EVENTS = frozenset({"agent_completed", "agent_failed"})
CHURN_WORKERS = 8
CHURN_USERS_PER_WORKER = 4
TOO_MANY_REQUESTS = 429
CHURN_RETRY_S = 5.0


@dataclass
class RoundResult:
    """What one round did (connections, events) and every behavioural check it failed.

    ``failures`` are checks that a load generator too slow to keep its schedule can fail on its
    own (a late pong gets a live tab reaped, a late look sees a release late); ``violations`` are
    states no generator can cause (an event twice or to another user, more connections than the
    limit, a queue over its limit), confirmed whatever the generator's load.
    """

    connections: int = 0
    events: int = 0
    failures: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Figures worth reporting whatever the verdict (how late reaping was, what memory grew)."""
    tabs: list[Tab] = field(default_factory=list)

    def check(self, holds: bool, failure: str) -> None:
        """A check that depends on the generator keeping its schedule."""
        if not holds:
            self.failures.append(failure)

    def forbid(self, happened: bool, violation: str) -> None:
        """A state the server must never reach, however slow its clients."""
        if happened:
            self.violations.append(violation)

    def absorb(self, other: RoundResult, prefix: str) -> None:
        self.connections += other.connections
        self.events += other.events
        self.failures.extend(f"{prefix}: {failure}" for failure in other.failures)
        self.violations.extend(f"{prefix}: {violation}" for violation in other.violations)
        self.notes.extend(f"{prefix}: {note}" for note in other.notes)
        self.tabs.extend(other.tabs)


@dataclass
class ScenarioContext:
    """The server's API, the profile and the sampler that a round runs with."""

    api: Api
    profile: Profile
    sampler: ResourceSampler
    fresh_server: bool
    runs_by_user: dict[str, set[str]] = field(default_factory=dict)
    alone: bool = True
    """Whether this scenario has the server to itself (not one user among many of comprehensive):
    only then is a change of the server's process memory its own."""
    load: LoadMonitor | None = None

    def note_run(self, user_id: str, run_id: str) -> None:
        self.runs_by_user.setdefault(user_id, set()).add(run_id)

    async def user_connection_ids(self, user_id: str) -> list[str]:
        """The ids of the user's open connections, from the admin endpoint."""
        return [str(row["connection_id"]) for row in await self.user_connections(user_id)]

    async def user_connections_at_once(self, user_id: str) -> int:
        """How many connections the user holds at one moment: the server's admin listing, or on a
        cluster the user's leases in Redis, read at once. Listing instance after instance is not
        one moment: it can count a connection evicted on one instance and, a moment later, its
        successor admitted on another (the eviction's close travels as a control message; the
        lease count, which the limit governs, never passes it)."""
        leases = await self.sampler.metrics.user_leases(user_id)
        return len(await self.user_connection_ids(user_id)) if leases is None else leases

    async def user_connections(self, user_id: str) -> list[dict[str, Any]]:
        """The user's open connections, as the admin endpoint of every instance lists them."""
        api = self.api
        headers = await api.auth("leaktest-admin", admin=True)
        rows: list[dict[str, Any]] = []
        for instance in api.target.instances:
            response = await api.http.get(
                f"{instance.base_url}/api/admin/users/{user_id}/connections", headers=headers
            )
            response.raise_for_status()
            body = response.json()
            rows.extend(body if isinstance(body, list) else body["connections"])
        return rows


class Watcher:
    """Polls the server every ``interval`` seconds while a round runs.

    A poll that fails ends the watching, and :meth:`stop` records why in the round: a check fed
    by a probe that failed proved nothing, so the round fails rather than passing on no data.
    The server answering with an error status is a violation; a transport error (a timeout, a
    refused connection) is a failure, which an overloaded generator can cause.
    """

    def __init__(self, what: str, poll: Callable[[], Awaitable[None]], interval: float) -> None:
        self.what = what
        self._poll = poll
        self._interval = interval
        self._watching = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leaktest-watch-{self.what}")

    async def _run(self) -> None:
        while self._watching:
            await self._poll()
            await asyncio.sleep(self._interval)

    async def stop(self, result: RoundResult) -> None:
        """Stop watching; record in ``result`` the poll that failed, if one did."""
        self._watching = False
        if self._task is None:
            return
        try:
            await self._task
        except httpx.HTTPStatusError as error:
            result.violations.append(f"{self.what} failed, so its check proved nothing: {error}")
        except Exception as error:
            result.failures.append(
                f"{self.what} failed, so its check proved nothing: {type(error).__name__}: {error}"
            )


class Scenario(Protocol):
    """One production scenario: a name, what it shows, and one round of it for one user."""

    name: str
    description: str

    async def round(self, ctx: ScenarioContext, sizes: Sizes, user_id: str) -> RoundResult: ...


@runtime_checkable
class Churning(Scenario, Protocol):
    """A scenario with a cheap connection cycle, repeated hundreds of times per memory round.

    A scenario round makes tens of connections, too few for a slope to see one object kept per
    connection; a churn round makes ``cycles`` of the scenario's own cycle, so that it does.
    """

    async def churn(self, ctx: ScenarioContext, cycles: int, user_id: str) -> RoundResult: ...


ChurnWork = Callable[[Sequence[str], int, RoundResult], Awaitable[None]]


async def churn_in_parallel(
    cycles: int, user_id: str, work: ChurnWork, users_per_worker: int = CHURN_USERS_PER_WORKER
) -> RoundResult:
    """Split ``cycles`` over :data:`CHURN_WORKERS` concurrent workers, each with its own users.

    ``work(users, count, result)`` makes ``count`` cycles as ``users``, recording them in
    ``result`` as it goes. Spreading every worker over a few users keeps each user under the
    server's connect rate while the cycles go as fast as it can. A worker that stops on an
    exception (a tab the server closed under it, a timeout) is a failed check of the round, with
    the cycles it made counted, and the other workers finish theirs.
    """
    share, extra = divmod(cycles, CHURN_WORKERS)
    shares = [share + (1 if w < extra else 0) for w in range(CHURN_WORKERS)]
    users = [[f"{user_id}-w{w}u{u}" for u in range(users_per_worker)] for w in range(CHURN_WORKERS)]
    results = [RoundResult() for _ in range(CHURN_WORKERS)]
    outcomes = await asyncio.gather(
        *(work(users[w], share, results[w]) for w, share in enumerate(shares) if share),
        return_exceptions=True,
    )
    result = RoundResult()
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            results[index].failures.append(f"stopped: {type(outcome).__name__}: {outcome}")
        result.absorb(results[index], f"churn worker {index}")
    return result


async def open_churn_tab(api: Api, user_id: str, name: str, *, resume: str | None = None) -> Tab:
    """:func:`open_tab`, waiting out the server's connect rate (HTTP 429) as a client should."""
    deadline = time.monotonic() + CHURN_RETRY_S
    pause = 0.02
    while True:
        try:
            return await open_tab(api, user_id, name, resume=resume)
        except Refused as refused:
            if refused.status != TOO_MANY_REQUESTS or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def run_until_complete(tabs: Iterable[Tab], run_id: str, timeout: float) -> list[str]:
    """Wait until every tab has the run's last event; the names of the tabs that never got it."""

    def done(tab: Tab) -> bool:
        return any(e.get("run_id") == run_id and e.get("event") in TERMINAL_EVENTS for e in tab.events)

    pending = list(tabs)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [tab for tab in pending if not done(tab)]
        if pending:
            await asyncio.sleep(0.01)
    return [tab.name for tab in pending]


def closes_of(tabs: Iterable[Tab], names: Iterable[str]) -> list[str]:
    """Each named tab with how it closed: a tab the server reaped says so (1011 heartbeat_timeout)."""
    by_name = {tab.name: tab for tab in tabs}
    return [f"{name} ({by_name[name].describe_close()})" for name in names]


async def paced(count: int, rate: float, start: Callable[[int], Awaitable[None]]) -> None:
    """Call ``start(i)`` for ``i`` in ``range(count)`` at ``rate`` per second, all concurrently."""

    async def later(index: int) -> None:
        await asyncio.sleep(index / rate)
        await start(index)

    await asyncio.gather(*(later(i) for i in range(count)))


def offsets_of(tab: Tab, thread_id: str, run_id: str | None = None) -> list[int]:
    """The offsets of the thread's events this tab got, in arrival order."""
    return [
        int(e["offset"])
        for e in tab.events
        if e.get("thread_id") == thread_id and (run_id is None or e.get("run_id") == run_id)
    ]


def duplicates(values: Iterable[int]) -> list[int]:
    seen: set[int] = set()
    repeated: list[int] = []
    for value in values:
        if value in seen:
            repeated.append(value)
        seen.add(value)
    return repeated
