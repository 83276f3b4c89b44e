"""The end-of-run text table, one row per scenario, and the profile table beside the seed's."""

from __future__ import annotations

from collections.abc import Sequence

from wsguard.leaktest.profiles import PROFILES, Profile
from wsguard.leaktest.results import CHURN, RunReport, ScenarioReport
from wsguard.leaktest.verdict import BLOCKS, CONNECTIONS, REGISTRY, USERS

HEADERS = (
    "scenario",
    "verdict",
    "conns",
    "events",
    "peak c/u/r",
    "final c/u/r",
    "cleanup p99",
    "blocks/cycle",
    "rss B/cycle",
    "churn blocks/cycle",
    "gen lag max",
    "server lat max",
    "time",
)


def _grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines)


def _count(values: dict[str, float], name: str) -> str:
    value = values.get(name)
    return "?" if value is None else f"{value:g}"


def _counts(values: dict[str, float]) -> str:
    """Connections, users and registry entries; ``-`` for a run that has none (any app's probe)."""
    names = (CONNECTIONS, USERS, REGISTRY)
    if not any(name in values for name in names):
        return "-"
    return "/".join(_count(values, name) for name in names)


def _largest_ms(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{max(known) * 1000:.0f} ms" if known else "-"


def scenario_row(scenario: ScenarioReport) -> list[str]:
    blocks = scenario.slope(BLOCKS)
    rss = scenario.slope("resident memory")
    churn = scenario.slope(BLOCKS, CHURN)
    p99 = scenario.cleanup_p99_s
    return [
        scenario.name,
        scenario.verdict.upper(),
        str(scenario.connections),
        str(scenario.events),
        _counts(scenario.peaks),
        _counts(scenario.final),
        "-" if p99 is None else f"{p99 * 1000:.1f} ms",
        "-" if blocks is None else f"{blocks.slope:.2f} (<={blocks.bound:.3g})",
        "-" if rss is None else f"{rss.slope:.0f} (<={rss.bound:g})",
        "-" if churn is None else f"{churn.slope:.3f} (<={churn.bound:g})",
        _largest_ms([r.load.generator_lag_max_s for r in scenario.rounds if r.load]),
        _largest_ms([r.load.server_latency_max_s for r in scenario.rounds if r.load]),
        f"{scenario.duration_s:.1f} s",
    ]


def render_table(report: RunReport) -> str:
    """The table per scenario, then every reason a scenario did not pass."""
    rows = [scenario_row(s) for s in report.scenarios]
    text = [
        f"wsguard leakcheck, profile {report.profile}, over {report.transport}, {report.target}",
        _grid(HEADERS, rows),
    ]
    for scenario in report.scenarios:
        if scenario.reasons:
            text.append(f"{scenario.name} {scenario.verdict.upper()}:")
            text.extend(f"  - {reason}" for reason in scenario.reasons)
    overall = overall_verdict(report)
    text.append(f"{overall} ({report.duration_s:.1f} s)")
    return "\n".join(text)


def overall_verdict(report: RunReport) -> str:
    """One phrase for the whole run, as the exit status says it."""
    if report.passed:
        return "no leak"
    if report.inconclusive:
        return "INCONCLUSIVE (the load generator could not keep its schedule; nothing found)"
    return "LEAK OR FAILURE"


def render_profiles(profiles: Sequence[Profile] | None = None) -> str:
    """Our bounds beside the seed's, which every profile must stay under."""
    headers = (
        "profile",
        "cleanup ms (seed)",
        "stress cycles (seed)",
        "memory MB (seed)",
        "blocks/cycle",
        "rounds",
        "churn cycles/round",
        "churn blocks/cycle",
    )
    rows = []
    for profile in profiles or list(PROFILES.values()):
        seed = profile.seed
        rows.append(
            [
                profile.name,
                f"{profile.cleanup_bound_s * 1000:g} ({seed.cleanup_ms if seed else '-'})",
                f"{profile.repeat.reconnect_cycles} ({seed.stress_cycles if seed else '-'})",
                f"{profile.rss_growth_bound_mb():.1f} ({seed.memory_mb if seed else '-'})",
                f"{profile.blocks_slope_bound:g}",
                f"{profile.warmup_rounds}+{profile.rounds}",
                f"{profile.churn_cycles}" if profile.churn_cycles else "-",
                f"{profile.churn_blocks_bound:g}" if profile.churn_cycles else "-",
            ]
        )
    return _grid(headers, rows)
