"""The machine-readable report."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from wsguard.leaktest.results import RunReport, ScenarioReport

SCHEMA = "wsguard.leakcheck/1"


def _scenario(scenario: ScenarioReport) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "description": scenario.description,
        "verdict": scenario.verdict,
        "reasons": scenario.reasons,
        "fresh_server": scenario.fresh_server,
        "connections": scenario.connections,
        "events": scenario.events,
        "duration_s": round(scenario.duration_s, 3),
        "cleanup_p99_s": scenario.cleanup_p99_s,
        "baseline": scenario.baseline,
        "peaks": scenario.peaks,
        "final": scenario.final,
        "leaks": scenario.leaks,
        "failures": scenario.failures,
        "inconclusive": scenario.inconclusive,
        "errors": scenario.errors,
        "memory": [
            {
                "signal": check.signal,
                "phase": check.phase,
                "unit": check.unit,
                "slope_per_cycle": check.slope,
                "later_slope_per_cycle": check.later_slope,
                "bound": check.bound,
                "passed": check.passed,
                "cycles": list(check.cycles),
                "values": list(check.values),
            }
            for check in scenario.slopes
        ],
        "rounds": [
            {
                "index": r.index,
                "phase": r.phase,
                "warmup": r.warmup,
                "connections": r.connections,
                "events": r.events,
                "failures": r.failures,
                "violations": r.violations,
                "notes": r.notes,
                "leaks": [
                    {"name": k.name, "value": k.value, "expected": k.expected, "baseline": k.baseline}
                    for k in r.leaks
                ],
                "settle_s": r.settle_s,
                "allocated_blocks": r.blocks,
                "resident_bytes": r.rss,
                "duration_s": round(r.duration_s, 3),
                "load": None if r.load is None else asdict(r.load),
                "overload": r.overload,
            }
            for r in scenario.rounds
        ],
        "samples": [{"t": round(s.at, 3), "values": s.values} for s in scenario.samples],
    }


def to_json(report: RunReport, server_log: str | None = None) -> dict[str, Any]:
    """The run as plain JSON data (``json.dumps`` it); ``server_log``: where the output of the
    servers the run started is, relative to the report (None when it started none)."""
    return {
        "schema": SCHEMA,
        "profile": report.profile,
        "target": report.target,
        "server_log": server_log,
        "transport": report.transport,
        "started_at": report.started_at,
        "duration_s": round(report.duration_s, 3),
        "passed": report.passed,
        "inconclusive": report.inconclusive,
        "scenarios": [_scenario(s) for s in report.scenarios],
    }
