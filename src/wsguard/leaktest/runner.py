"""Runs scenarios round by round and turns what the probes saw into verdicts.

A round is followed by the settle check: once its clients are gone, the connection, user and
registry counts must reach 0, and tasks and file descriptors their baseline, within the
profile's cleanup bound. After each measured round the memory gauges are read; their slope per
connection cycle is the second signal.

Every round also measures its own load (:mod:`wsguard.leaktest.load`): when the generator's loop
lagged past its allowance the round is inconclusive, with the figures; a count still off its
mark after the profile's settle timeout stays a leak even then.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from wsguard.leaktest.client import TRANSPORTS, WEBSOCKET, Api, Target
from wsguard.leaktest.load import LoadMonitor, lag_allowance_s, starve_generator
from wsguard.leaktest.profiles import Profile
from wsguard.leaktest.progress import Progress
from wsguard.leaktest.results import CHURN, ROUNDS, RoundRecord, RunReport, ScenarioReport
from wsguard.leaktest.sampling import PSUTIL_RSS, MetricsProbe, ProcessProbe, ResourceSampler, Timeline
from wsguard.leaktest.scenarios import SCENARIOS, ScenarioContext
from wsguard.leaktest.scenarios.base import Churning, RoundResult
from wsguard.leaktest.verdict import (
    BLOCKS,
    CONNECTIONS,
    REGISTRY,
    RSS,
    USERS,
    CountLeak,
    SlopeCheck,
    count_leaks,
    histogram_buckets,
    histogram_quantile,
    slope_check,
)
from wsguard.processes.process import ServerProcess
from wsguard.processes.redis_cluster import RedisClusterServers
from wsguard.processes.redis_server import RedisServer

CLEANUP_HISTOGRAM = "wsguard_cleanup_seconds"
PEAK_SERIES = (CONNECTIONS, USERS, "wsguard_user_connections_max", REGISTRY, PSUTIL_RSS, RSS)
ServerSource = Callable[[], AbstractContextManager[Target]]
CLUSTER_LEASE_TTL_S = 2.0
"""Short leases, so that a cluster instance that dies frees its slots within seconds."""
API_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
"""The scenarios' HTTP client: comprehensive runs three watchers, a flood and the runs of every
user at once, more than httpx's default pool of 100, whose wait would be the harness's own."""
SETTLED_SCRAPES = 5
"""Garbage-collected scrapes per memory reading; their median is the reading."""


def managed_servers(
    profile: Profile,
    command: Sequence[str] | None = None,
    extra_flags: Sequence[str] = (),
    *,
    log_path: Path | None = None,
) -> ServerSource:
    """A fresh server process per scenario, with the profile's flags, stopped afterwards; its
    output appended to ``log_path`` when given."""

    @contextlib.contextmanager
    def start() -> Iterator[Target]:
        flags = (*profile.server_flags(), *extra_flags)
        with ServerProcess(*flags, command=command, log_path=log_path) as server:
            yield target_of(server)

    return start


def managed_cluster(
    profile: Profile,
    instances: int,
    command: Sequence[str] | None = None,
    extra_flags: Sequence[str] = (),
    *,
    redis_cluster: bool = False,
    log_path: Path | None = None,
) -> ServerSource:
    """A fresh cluster per scenario: a private Redis (or, with ``redis_cluster``, a private Redis
    Cluster of three masters) and ``instances`` servers sharing it and one JWT secret (so that a
    token, a session and a resume work on every instance); their output appended to
    ``log_path`` when given."""
    if instances < 2:
        raise ValueError(f"a cluster has at least 2 instances, not {instances}")
    secret = secrets.token_urlsafe(32)

    @contextlib.contextmanager
    def start() -> Iterator[Target]:
        shared = RedisClusterServers(masters=3) if redis_cluster else RedisServer()
        with shared as redis_server, contextlib.ExitStack() as stack:
            flags = [
                *profile.server_flags(),
                "--backend", redis_server.url,
                f"--jwt-secret={secret}",  # a secret may start with "-"
                "--lease-ttl", str(CLUSTER_LEASE_TTL_S),
                *extra_flags,
            ]  # fmt: skip
            servers = [ServerProcess(*flags, command=command, log_path=log_path) for _ in range(instances)]
            for server in servers:
                stack.callback(server.stop)
            with ThreadPoolExecutor(max_workers=instances) as starting:
                list(starting.map(ServerProcess.start, servers))
            first, *others = (target_of(server) for server in servers)
            yield replace(first, peers=tuple(others), redis_url=redis_server.url)

    return start


def target_of(server: ServerProcess) -> Target:
    return Target(
        ws_url=server.ws_url,
        metrics_url=f"{server.base_url}/metrics",
        token_url=f"{server.base_url}/api/dev/tokens",
        pid=server.pid,
    )


def external_server(target: Target) -> ServerSource:
    """A server someone else runs: the same one for every scenario."""
    return lambda: contextlib.nullcontext(target)


def run_leakcheck(
    profile: Profile,
    scenarios: Sequence[str],
    servers: ServerSource,
    *,
    target_label: str,
    fresh_servers: bool,
    progress: Progress | None = None,
    starve_generator_s: float = 0.0,
    transport: str = WEBSOCKET,
) -> RunReport:
    """Run ``scenarios`` in order, each on a server from ``servers``; never raises for a verdict.

    ``starve_generator_s`` blocks the harness's own event loop that long once a second (a
    deliberately overloaded generator, to show that its rounds come out inconclusive).
    ``transport`` is what every tab connects over: ``websocket`` or ``sse``.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; known: {', '.join(TRANSPORTS)}")
    progress = progress or Progress()
    report = RunReport(
        profile=profile.name,
        target=target_label,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        transport=transport,
    )
    started = time.monotonic()
    progress.line(f"wsguard leakcheck: profile {profile.name}, over {transport}, {target_label}")
    for name in scenarios:
        progress.line(f"{name}: {profile.warmup_rounds} warm-up + {profile.rounds} measured rounds")

        def play(name: str = name) -> ScenarioReport:
            with servers() as target:
                return asyncio.run(
                    run_scenario(
                        name, profile, target, fresh_servers, progress, starve_generator_s, transport
                    )
                )

        report.scenarios.append(
            play_scenario(name, SCENARIOS[name].description, fresh_servers, play, progress)
        )
    report.duration_s = time.monotonic() - started
    progress.done()
    return report


def play_scenario(
    name: str,
    description: str,
    fresh_server: bool,
    play: Callable[[], ScenarioReport],
    progress: Progress,
) -> ScenarioReport:
    """Play one scenario, timed and reported; an exception is the scenario's error, not the run's."""
    started = time.monotonic()
    try:
        outcome = play()
    except Exception as error:
        outcome = ScenarioReport(name=name, description=description, fresh_server=fresh_server)
        outcome.errors.append(f"{type(error).__name__}: {error}")
    outcome.duration_s = time.monotonic() - started
    summary = f"{name}: {outcome.verdict.upper()} in {outcome.duration_s:.1f} s"
    progress.line(summary + "".join(f"\n    {reason}" for reason in outcome.reasons[:10]))
    return outcome


async def run_scenario(
    name: str,
    profile: Profile,
    target: Target,
    fresh_server: bool,
    progress: Progress,
    starve_generator_s: float = 0.0,
    transport: str = WEBSOCKET,
) -> ScenarioReport:
    """Warm-up and measured rounds of one scenario, then its churn rounds, each followed by the
    settle check."""
    scenario = SCENARIOS[name]
    report = ScenarioReport(name=name, description=scenario.description, fresh_server=fresh_server)
    timeline = Timeline()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as metrics_http:
        pids = target.pids
        probe = MetricsProbe(
            [instance.metrics_url for instance in target.instances],
            metrics_http,
            redis_url=target.redis_url,
            pids=pids,
        )
        process = ProcessProbe(*pids) if pids is not None else None
        sampler = ResourceSampler(probe, process, timeline)
        baseline = await probe.settled()
        report.baseline = baseline
        sampler.start(name)
        runner = _Rounds(name, profile, target, sampler, fresh_server, baseline, progress, report, transport)
        starving = asyncio.create_task(starve_generator(starve_generator_s)) if starve_generator_s else None
        try:
            user_id = f"lt-{name}"
            ok = await runner.phase(
                ROUNDS,
                lambda ctx, index: scenario.round(
                    ctx, profile.first if index == 0 else profile.repeat, user_id
                ),
            )
            if ok and isinstance(scenario, Churning) and profile.churn_cycles > 0:
                churning = scenario
                await runner.phase(
                    CHURN,
                    lambda ctx, index: churning.churn(ctx, profile.churn_cycles, f"lt-churn-{name}"),
                )
        except Exception as error:
            report.errors.append(f"{type(error).__name__}: {error}")
        finally:
            if starving is not None:
                starving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starving
            await sampler.stop()
            await probe.close()
        report.final = runner.last
        report.samples = timeline.of(name)
        for series in PEAK_SERIES:
            peak = timeline.peak(name, series)
            if peak is not None:
                report.peaks[series] = peak
        report.cleanup_p99_s = histogram_quantile(
            0.99,
            histogram_buckets(baseline, CLEANUP_HISTOGRAM),
            histogram_buckets(runner.last, CLEANUP_HISTOGRAM),
        )
        if report.cleanup_p99_s is not None and report.cleanup_p99_s > profile.cleanup_bound_s:
            report.rounds[-1].failures.append(
                f"{CLEANUP_HISTOGRAM} p99 is {report.cleanup_p99_s * 1000:.0f} ms, "
                f"over the cleanup bound of {profile.cleanup_bound_s * 1000:.0f} ms"
            )
        # A cluster's blocks are the sum of its instances', and so is the noise of a short round.
        instances = len(target.instances)
        rounds_blocks_bound = _blocks_bound(report.rounds, ROUNDS, profile.blocks_slope_bound) * instances
        report.slopes.extend(_slopes(report.rounds, ROUNDS, rounds_blocks_bound, profile.rss_slope_bound))
        churn_blocks_bound = _blocks_bound(report.rounds, CHURN, profile.churn_blocks_bound)
        report.slopes.extend(_slopes(report.rounds, CHURN, churn_blocks_bound, profile.churn_rss_bound))
    return report


PlayRound = Callable[[ScenarioContext, int], Awaitable[RoundResult]]


class _Rounds:
    """Plays the rounds of one scenario's phases, recording each and the last settled sample."""

    def __init__(
        self,
        name: str,
        profile: Profile,
        target: Target,
        sampler: ResourceSampler,
        fresh_server: bool,
        baseline: dict[str, float],
        progress: Progress,
        report: ScenarioReport,
        transport: str,
    ) -> None:
        self.name = name
        self.transport = transport
        self.profile = profile
        self.target = target
        self.sampler = sampler
        self.fresh_server = fresh_server
        self.baseline = baseline
        self.progress = progress
        self.report = report
        self.tokens: dict[tuple[str, bool], str] = {}
        self.last = baseline
        self.index = 0

    async def phase(self, phase: str, play: PlayRound) -> bool:
        """Warm-up and measured rounds of ``play``; False once a round leaked or failed.

        An overloaded round does not stop the phase: the memory slopes over all its rounds hold
        whatever the generator's load, and a later round may find what this one could not.
        """
        for number in range(self.profile.warmup_rounds + self.profile.rounds):
            record = await self._one_round(phase, number, number < self.profile.warmup_rounds, play)
            self.report.rounds.append(record)
            self.progress.line(_round_line(self.name, record))
            for note in record.notes:
                self.progress.line(f"    {note}")
            if record.leaks or record.violations or (record.failures and not record.overload):
                return False
        return True

    async def _one_round(self, phase: str, number: int, warmup: bool, play: PlayRound) -> RoundRecord:
        index = self.index
        self.index += 1
        label = ("churn " if phase == CHURN else "") + f"round {index}" + (" (warm-up)" if warmup else "")
        started = time.monotonic()
        monitor = LoadMonitor([i.base_url for i in self.target.instances], self.target.pids)
        monitor.start()
        async with httpx.AsyncClient(timeout=10.0, limits=API_LIMITS) as api_http:
            api = Api(self.target, api_http, self.tokens, transport=self.transport)
            ctx = ScenarioContext(
                api=api,
                profile=self.profile,
                sampler=self.sampler,
                fresh_server=self.fresh_server and index == 0,
                load=monitor,
            )
            live = asyncio.create_task(_show_live(self.progress, self.sampler, self.name, label))
            try:
                outcome = await play(ctx, number)
            except Exception as error:  # a check that could not finish failed, like any other
                outcome = RoundResult(failures=[f"the round stopped: {type(error).__name__}: {error}"])
            finally:
                live.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await live
        await monitor.stop_probing_server()
        gone = time.monotonic()
        probe, profile = self.sampler.metrics, self.profile
        sample, leaks, settle_s = await settle(probe, self.baseline, gone, profile.cleanup_bound_s)
        load = await monitor.stop()
        failures = list(outcome.failures)
        allowance = lag_allowance_s(profile.cleanup_bound_s, profile.heartbeat_timeout_s)
        overload = None
        if load.generator_lag_max_s > allowance:
            overload = (
                f"INCONCLUSIVE: the load generator could not keep its schedule: {load.describe()}; "
                f"its allowance is {allowance * 1000:.0f} ms of loop lag"
            )
            if leaks:
                late = ", ".join(leak.describe() for leak in leaks)
                sample, leaks, settle_s = await settle(probe, self.baseline, gone, profile.settle_timeout_s)
                if not leaks:
                    failures.append(f"counts settled only after the cleanup bound: {late}")
        memory_blocks: float | None = None
        memory_rss: float | None = None
        if not leaks:
            settled = await self.sampler.metrics.settled(SETTLED_SCRAPES)
            leaks = count_leaks(settled, self.baseline)
            sample = settled
            memory_blocks = settled.get(BLOCKS)
            memory_rss = settled.get(RSS)
            if self.sampler.process is not None:
                memory_rss = self.sampler.process.sample().get(PSUTIL_RSS, memory_rss)
        self.last = sample
        return RoundRecord(
            index=index,
            warmup=warmup,
            connections=outcome.connections,
            events=outcome.events,
            failures=failures,
            violations=outcome.violations,
            notes=outcome.notes,
            leaks=leaks,
            settle_s=settle_s,
            blocks=memory_blocks,
            rss=memory_rss,
            duration_s=time.monotonic() - started,
            phase=phase,
            load=load,
            overload=overload,
        )


ROUND_NOISE_BLOCKS = 150.0
"""How far a server's garbage-collected block count wanders between rounds with no leak (measured
on the real server: within about 150 blocks). Over rounds of few cycles that noise is a large
slope, so a phase's bound is at least this much per cycle of its measured rounds. The churn
phase, with its long rounds, is where one block per cycle is caught; churn rounds cut short
(workers stopped under an overloaded generator) get the same floor, so that their noise is never
taken for a leak."""


def _blocks_bound(rounds: Sequence[RoundRecord], phase: str, bound: float) -> float:
    measured = [r.connections for r in rounds if r.phase == phase and not r.warmup]
    cycles_per_round = max(1.0, sum(measured) / len(measured)) if measured else 1.0
    return max(bound, ROUND_NOISE_BLOCKS / cycles_per_round)


def _slopes(
    rounds: Sequence[RoundRecord], phase: str, blocks_bound: float, rss_bound: float
) -> list[SlopeCheck]:
    """The memory slopes over the measured rounds of ``phase``, against cumulative cycles.

    Cycles count from the phase's first round, so the warm-up rounds' connections shift every
    point alike and do not change the slope.
    """
    cycles: list[float] = []
    blocks: list[float] = []
    rss: list[float] = []
    total = 0
    for record in (r for r in rounds if r.phase == phase):
        total += record.connections
        if record.warmup or record.blocks is None:
            continue
        cycles.append(total)
        blocks.append(record.blocks)
        if record.rss is not None:
            rss.append(record.rss)
    overloaded = any(r.overload for r in rounds if r.phase == phase and not r.warmup)
    checks: list[SlopeCheck] = []
    if len(blocks) >= 2:
        checks.append(slope_check(BLOCKS, "blocks", cycles, blocks, blocks_bound, phase=phase))
    if len(rss) >= 2 and len(rss) == len(cycles):
        checks.append(slope_check("resident memory", "bytes", cycles, rss, rss_bound, phase=phase))
    return [replace(check, confirmed=not overloaded) for check in checks]


async def settle(
    probe: MetricsProbe,
    baseline: dict[str, float],
    gone: float,
    bound_s: float,
    leaks_of: Callable[[dict[str, float], dict[str, float]], list[CountLeak]] = count_leaks,
) -> tuple[dict[str, float], list[CountLeak], float | None]:
    """Poll until nothing leaks (by ``leaks_of``) or ``bound_s`` after ``gone`` has passed;
    the last sample, what still leaks, and how long the counts took to come back."""
    deadline = gone + bound_s
    while True:
        sample = await probe.scrape()
        leaks = leaks_of(sample, baseline)
        now = time.monotonic()
        if not leaks:
            return sample, [], now - gone
        if now >= deadline:
            return sample, leaks, None
        await asyncio.sleep(0.005)


async def _show_live(progress: Progress, sampler: ResourceSampler, name: str, label: str) -> None:
    while True:
        progress.status(name, label, sampler.last)
        await asyncio.sleep(0.25)


def _round_line(name: str, record: RoundRecord) -> str:
    settle = "never" if record.settle_s is None else f"{record.settle_s * 1000:.0f} ms"
    verdict = (
        "leak" if record.leaks else "inconclusive" if record.overload else "fail" if record.failures else "ok"
    )
    phase = "churn " if record.phase == CHURN else ""
    load = f"; {record.load.describe()}" if record.load is not None else ""
    return (
        f"  {name} {phase}round {record.index}{' (warm-up)' if record.warmup else ''}: {verdict}, "
        f"{record.connections} connections, {record.events} events, settled in {settle}, "
        f"{record.duration_s:.2f} s{load}"
    )
