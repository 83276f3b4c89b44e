"""Runs the generic scenarios against one application and turns the probe's counts into verdicts.

Reuses the harness's pieces: the probe scraper and sampler, the round and scenario records, the
slope check and the reports. What differs is which counts must come back (see ``verdict``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx

from wsguard.leaktest.generic.peers import open_peer
from wsguard.leaktest.generic.scenarios import GENERIC_SCENARIOS, GenericRound, GenericScenario
from wsguard.leaktest.generic.target import GenericSizes, GenericTarget
from wsguard.leaktest.generic.verdict import PROBE_COUNTS, app_counts, generic_count_leaks
from wsguard.leaktest.progress import Progress
from wsguard.leaktest.results import CHURN, RoundRecord, RunReport, ScenarioReport
from wsguard.leaktest.runner import play_scenario, settle
from wsguard.leaktest.sampling import MetricsProbe, ProcessProbe, ResourceSampler, Timeline
from wsguard.leaktest.verdict import BLOCKS, RSS, SlopeCheck, slope_check
from wsguard.probe import SCOPES_OPEN

SETTLED_SCRAPES = 5


class ProbeSampler(ResourceSampler):
    """The harness's sampler, keeping every series the probe reports (its names are not wsguard's)."""

    def charted(self, name: str) -> bool:
        return True


def run_generic(
    target: GenericTarget,
    scenarios: Sequence[str],
    sizes: GenericSizes | None = None,
    *,
    progress: Progress | None = None,
) -> RunReport:
    """Run ``scenarios`` in order against ``target``; never raises for a verdict."""
    sizes = sizes or GenericSizes()
    unknown = [name for name in scenarios if name not in GENERIC_SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {', '.join(GENERIC_SCENARIOS)}")
    progress = progress or Progress()
    label = f"target {target.ws_url}, probe {target.probe_url}"
    report = RunReport(
        profile=sizes.name, target=label, started_at=datetime.now(UTC).isoformat(timespec="seconds")
    )
    started = time.monotonic()
    progress.line(f"wsguard leakcheck: any ASGI app, {label}")
    for name in scenarios:
        scenario = GENERIC_SCENARIOS[name]

        def play(scenario: GenericScenario = scenario) -> ScenarioReport:
            return asyncio.run(run_generic_scenario(scenario, target, sizes, progress))

        report.scenarios.append(play_scenario(name, scenario.description, False, play, progress))
    report.duration_s = time.monotonic() - started
    progress.done()
    return report


async def run_generic_scenario(
    scenario: GenericScenario, target: GenericTarget, sizes: GenericSizes, progress: Progress
) -> ScenarioReport:
    """Warm-up and measured rounds of ``scenario``, each followed by the settle check."""
    report = ScenarioReport(name=scenario.name, description=scenario.description, fresh_server=False)
    timeline = Timeline()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as http:
        probe = MetricsProbe(target.probe_url, http)
        process = ProcessProbe(target.pid) if target.pid is not None else None
        sampler = ProbeSampler(probe, process, timeline)
        baseline = await _baseline(probe, target, sizes)
        report.baseline = baseline
        sampler.start(scenario.name)
        last = baseline
        measured = sizes.churn_rounds if scenario.phase == CHURN else sizes.rounds
        try:
            for index in range(sizes.warmup_rounds + measured):
                ctx = GenericRound(target, sizes, probe, index)
                record, last = await _one_round(scenario, ctx, baseline, index < sizes.warmup_rounds)
                report.rounds.append(record)
                progress.line(_round_line(scenario.name, record))
                if record.leaks or record.failures:
                    break
        except Exception as error:
            report.errors.append(f"{type(error).__name__}: {error}")
        finally:
            await sampler.stop()
            await probe.close()
        report.final = last
        report.samples = timeline.of(scenario.name)
        for series in (*PROBE_COUNTS, *app_counts(baseline, last), RSS):
            peak = timeline.peak(scenario.name, series)
            if peak is not None:
                report.peaks[series] = peak
        report.slopes.extend(_slopes(report.rounds, sizes))
    return report


async def _baseline(probe: MetricsProbe, target: GenericTarget, sizes: GenericSizes) -> dict[str, float]:
    """The settled counts after one connection came and went, so that what an application sets
    up once, on its first connection, is not taken for a leak."""
    first = await probe.scrape()
    if SCOPES_OPEN not in first:
        raise RuntimeError(f"{target.probe_url} has no {SCOPES_OPEN}: is it the wsguard probe's URL?")
    peer = await open_peer(target, target.identity_of("primer"))
    await peer.close()
    deadline = time.monotonic() + sizes.cleanup_bound_s
    while (await probe.scrape()).get(SCOPES_OPEN, 0.0) > first[SCOPES_OPEN]:
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.01)
    return await probe.settled(SETTLED_SCRAPES)


async def _one_round(
    scenario: GenericScenario, ctx: GenericRound, baseline: dict[str, float], warmup: bool
) -> tuple[RoundRecord, dict[str, float]]:
    started = time.monotonic()
    outcome = await scenario.play(ctx)
    gone = time.monotonic()
    sample, leaks, settle_s = await settle(
        ctx.probe, baseline, gone, ctx.sizes.cleanup_bound_s, generic_count_leaks
    )
    blocks: float | None = None
    rss: float | None = None
    if not leaks:
        sample = await ctx.probe.settled(SETTLED_SCRAPES)
        leaks = generic_count_leaks(sample, baseline)
        blocks, rss = sample.get(BLOCKS), sample.get(RSS)
    record = RoundRecord(
        index=ctx.index,
        warmup=warmup,
        connections=outcome.connections,
        events=outcome.events,
        failures=outcome.failures,
        leaks=[*ctx.leaks, *leaks],
        settle_s=settle_s,
        blocks=blocks,
        rss=rss,
        duration_s=time.monotonic() - started,
        phase=scenario.phase,
    )
    return record, sample


def _slopes(rounds: Sequence[RoundRecord], sizes: GenericSizes) -> list[SlopeCheck]:
    """The churn phase's memory slopes over its measured rounds, against cumulative cycles."""
    cycles: list[float] = []
    blocks: list[float] = []
    rss: list[float] = []
    total = 0
    for record in (r for r in rounds if r.phase == CHURN):
        total += record.connections
        if record.warmup or record.blocks is None or record.rss is None:
            continue
        cycles.append(total)
        blocks.append(record.blocks)
        rss.append(record.rss)
    if len(cycles) < 2:
        return []
    return [
        slope_check(BLOCKS, "blocks", cycles, blocks, sizes.churn_blocks_bound, phase=CHURN),
        slope_check("resident memory", "bytes", cycles, rss, sizes.churn_rss_bound, phase=CHURN),
    ]


def _round_line(name: str, record: RoundRecord) -> str:
    settle = "never" if record.settle_s is None else f"{record.settle_s * 1000:.0f} ms"
    verdict = "leak" if record.leaks else "fail" if record.failures else "ok"
    return (
        f"  {name} round {record.index}{' (warm-up)' if record.warmup else ''}: {verdict}, "
        f"{record.connections} connections, {record.events} messages, settled in {settle}, "
        f"{record.duration_s:.2f} s"
    )
