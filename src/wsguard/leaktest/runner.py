"""Runs scenarios round by round and turns what the probes saw into verdicts.

A round is followed by the settle check: once its clients are gone, the connection, user and
registry counts must reach 0, and tasks and file descriptors their baseline, within the
profile's cleanup bound. After each measured round the memory gauges are read; their slope per
connection cycle is the second signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import httpx

from wsguard.leaktest.client import Api, Target
from wsguard.leaktest.probes import PSUTIL_RSS, MetricsProbe, ProcessProbe, Sampler, Timeline
from wsguard.leaktest.profiles import Profile
from wsguard.leaktest.progress import Progress
from wsguard.leaktest.results import RoundRecord, RunReport, ScenarioReport
from wsguard.leaktest.scenarios import SCENARIOS, ScenarioContext
from wsguard.leaktest.verdict import (
    BLOCKS,
    CONNECTIONS,
    REGISTRY,
    RSS,
    USERS,
    CountLeak,
    count_leaks,
    histogram_buckets,
    histogram_quantile,
    slope_check,
)
from wsguard.testing.process import ServerProcess

CLEANUP_HISTOGRAM = "wsguard_cleanup_seconds"
PEAK_SERIES = (CONNECTIONS, USERS, "wsguard_user_connections_max", REGISTRY, PSUTIL_RSS, RSS)
ServerSource = Callable[[], AbstractContextManager[Target]]


def managed_servers(
    profile: Profile, command: Sequence[str] | None = None, extra_flags: Sequence[str] = ()
) -> ServerSource:
    """A fresh server process per scenario, with the profile's flags, stopped afterwards."""

    @contextlib.contextmanager
    def start() -> Iterator[Target]:
        with ServerProcess(*profile.server_flags(), *extra_flags, command=command) as server:
            yield Target(
                ws_url=server.ws_url,
                metrics_url=f"{server.base_url}/metrics",
                token_url=f"{server.base_url}/api/dev/tokens",
                pid=server.pid,
            )

    return start


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
) -> RunReport:
    """Run ``scenarios`` in order, each on a server from ``servers``; never raises for a verdict."""
    progress = progress or Progress()
    report = RunReport(
        profile=profile.name,
        target=target_label,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    started = time.monotonic()
    progress.line(f"wsguard leakcheck: profile {profile.name}, {target_label}")
    for name in scenarios:
        scenario_started = time.monotonic()
        progress.line(f"{name}: {profile.warmup_rounds} warm-up + {profile.rounds} measured rounds")
        try:
            with servers() as target:
                outcome = asyncio.run(run_scenario(name, profile, target, fresh_servers, progress))
        except Exception as error:
            outcome = ScenarioReport(
                name=name, description=SCENARIOS[name].description, fresh_server=fresh_servers
            )
            outcome.errors.append(f"{type(error).__name__}: {error}")
        outcome.duration_s = time.monotonic() - scenario_started
        report.scenarios.append(outcome)
        summary = f"{name}: {outcome.verdict.upper()} in {outcome.duration_s:.1f} s"
        progress.line(summary + "".join(f"\n    {reason}" for reason in outcome.reasons[:10]))
    report.duration_s = time.monotonic() - started
    progress.done()
    return report


async def run_scenario(
    name: str, profile: Profile, target: Target, fresh_server: bool, progress: Progress
) -> ScenarioReport:
    """Warm-up and measured rounds of one scenario, each followed by the settle check."""
    scenario = SCENARIOS[name]
    report = ScenarioReport(name=name, description=scenario.description, fresh_server=fresh_server)
    timeline = Timeline()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as metrics_http:
        probe = MetricsProbe(target.metrics_url, metrics_http)
        process = ProcessProbe(target.pid) if target.pid is not None else None
        sampler = Sampler(probe, process, timeline)
        baseline = await probe.settled()
        report.baseline = baseline
        sampler.start(name)
        tokens: dict[tuple[str, bool], str] = {}
        cycles: list[float] = []
        blocks: list[float] = []
        rss: list[float] = []
        total_cycles = 0
        last = baseline
        try:
            for index in range(profile.warmup_rounds + profile.rounds):
                warmup = index < profile.warmup_rounds
                record, last = await _one_round(
                    name,
                    index,
                    warmup,
                    profile,
                    target,
                    sampler,
                    tokens,
                    fresh_server,
                    baseline,
                    progress,
                )
                report.rounds.append(record)
                total_cycles += record.connections
                progress.line(_round_line(name, record))
                if record.leaks or record.failures:
                    break
                if not warmup and record.blocks is not None:
                    cycles.append(total_cycles)
                    blocks.append(record.blocks)
                    if record.rss is not None:
                        rss.append(record.rss)
        except Exception as error:
            report.errors.append(f"{type(error).__name__}: {error}")
        finally:
            await sampler.stop()
        report.final = last
        report.samples = timeline.of(name)
        for series in PEAK_SERIES:
            peak = timeline.peak(name, series)
            if peak is not None:
                report.peaks[series] = peak
        report.cleanup_p99_s = histogram_quantile(
            0.99,
            histogram_buckets(baseline, CLEANUP_HISTOGRAM),
            histogram_buckets(last, CLEANUP_HISTOGRAM),
        )
        if report.cleanup_p99_s is not None and report.cleanup_p99_s > profile.cleanup_bound_s:
            report.rounds[-1].failures.append(
                f"{CLEANUP_HISTOGRAM} p99 is {report.cleanup_p99_s * 1000:.0f} ms, "
                f"over the cleanup bound of {profile.cleanup_bound_s * 1000:.0f} ms"
            )
        if len(blocks) >= 2:
            report.slopes.append(slope_check(BLOCKS, "blocks", cycles, blocks, profile.blocks_slope_bound))
        if len(rss) >= 2 and len(rss) == len(cycles):
            report.slopes.append(
                slope_check("resident memory", "bytes", cycles, rss, profile.rss_slope_bound)
            )
    return report


async def _one_round(
    name: str,
    index: int,
    warmup: bool,
    profile: Profile,
    target: Target,
    sampler: Sampler,
    tokens: dict[tuple[str, bool], str],
    fresh_server: bool,
    baseline: dict[str, float],
    progress: Progress,
) -> tuple[RoundRecord, dict[str, float]]:
    label = f"round {index}" + (" (warm-up)" if warmup else "")
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10.0) as api_http:
        api = Api(target, api_http, tokens)
        ctx = ScenarioContext(
            api=api, profile=profile, sampler=sampler, fresh_server=fresh_server and index == 0
        )
        live = asyncio.create_task(_show_live(progress, sampler, name, label))
        try:
            outcome = await SCENARIOS[name].round(
                ctx, profile.first if index == 0 else profile.repeat, f"lt-{name}"
            )
        finally:
            live.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await live
    gone = time.monotonic()
    sample, leaks, settle_s = await _settle(sampler.metrics, baseline, gone, profile)
    memory_blocks: float | None = None
    memory_rss: float | None = None
    if not leaks:
        settled = await sampler.metrics.settled()
        leaks = count_leaks(settled, baseline)
        sample = settled
        memory_blocks = settled.get(BLOCKS)
        memory_rss = settled.get(RSS)
        if sampler.process is not None:
            memory_rss = sampler.process.sample().get(PSUTIL_RSS, memory_rss)
    record = RoundRecord(
        index=index,
        warmup=warmup,
        connections=outcome.connections,
        events=outcome.events,
        failures=outcome.failures,
        leaks=leaks,
        settle_s=settle_s,
        blocks=memory_blocks,
        rss=memory_rss,
        duration_s=time.monotonic() - started,
    )
    return record, sample


async def _settle(
    probe: MetricsProbe, baseline: dict[str, float], gone: float, profile: Profile
) -> tuple[dict[str, float], list[CountLeak], float | None]:
    """Poll until nothing leaks or the cleanup bound after ``gone`` has passed."""
    deadline = gone + profile.cleanup_bound_s
    while True:
        sample = await probe.scrape()
        leaks = count_leaks(sample, baseline)
        now = time.monotonic()
        if not leaks:
            return sample, [], now - gone
        if now >= deadline:
            return sample, leaks, None
        await asyncio.sleep(0.005)


async def _show_live(progress: Progress, sampler: Sampler, name: str, label: str) -> None:
    while True:
        progress.status(name, label, sampler.last)
        await asyncio.sleep(0.25)


def _round_line(name: str, record: RoundRecord) -> str:
    settle = "never" if record.settle_s is None else f"{record.settle_s * 1000:.0f} ms"
    verdict = "leak" if record.leaks else "fail" if record.failures else "ok"
    return (
        f"  {name} round {record.index}{' (warm-up)' if record.warmup else ''}: {verdict}, "
        f"{record.connections} connections, {record.events} events, settled in {settle}, "
        f"{record.duration_s:.2f} s"
    )
