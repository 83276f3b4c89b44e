"""The benchmark's table, its verdict on each performance target, and bench/RESULTS.md."""

from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

Results = dict[str, dict[str, list[float]]]
"""Per server, per figure value (``"figure.value"``), the value of each round."""

BASE = "bare"
PAIRS = (("wsguard-sse", "wsguard"),)
"""Ratios shown besides those to bare: an SSE stream against a WebSocket of the same server."""
PACKAGES = ("uvicorn", "starlette", "websockets", "python-socketio", "python-engineio", "httpx")


@dataclass(frozen=True)
class Row:
    """One figure value of the table: its label, its key in :data:`Results`, and how to print it."""

    label: str
    key: str
    scale: float = 1.0
    form: str = "{:,.0f}"


@dataclass(frozen=True)
class Sizes:
    """The loads as run, for the labels."""

    idle: int
    fanout: int
    spread_users: int
    spread_per_user: int
    hold: int
    hold_timeout: float
    ceiling: int


def held_rows(label: str, figure: str) -> list[Row]:
    """The rows of :func:`figures.hold`, run as ``figure``."""
    return [
        Row(f"{label}: opened per second", f"{figure}.open_per_s"),
        Row(f"{label}: one event per user to all (ms)", f"{figure}.fanout_ms"),
        Row(f"{label}: RSS per connection (KiB)", f"{figure}.rss_per_connection", 1024, "{:,.1f}"),
        Row(f"{label}: asyncio tasks per connection", f"{figure}.tasks_per_connection", form="{:.2f}"),
        Row(f"{label}: TCP reset to connections released (ms)", f"{figure}.released_ms"),
        Row(f"{label}: TCP reset to every count at 0, tasks too (ms)", f"{figure}.to_zero_ms"),
        Row(f"{label}: load client's teardown, first reset to last (ms)", f"{figure}.teardown_ms"),
        Row(f"{label}: server CPU from the first reset to 0 (ms)", f"{figure}.release_server_cpu_ms"),
    ]


def rows(sizes: Sizes) -> list[Row]:
    spread = f"fan-out to {sizes.spread_users:,} users x {sizes.spread_per_user}"
    return [
        Row("connect/close churn (cycles/s)", "churn.cycles_per_s"),
        Row("connect/close churn: server CPU per cycle (ms)", "churn.server_cpu_ms_per_cycle", form="{:.3f}"),
        Row(
            "connect/close churn: load client CPU per cycle (ms)",
            "churn.client_cpu_ms_per_cycle",
            form="{:.3f}",
        ),
        Row(
            "cleanup during churn: p99 at most (ms, a bucket bound)",
            "churn.cleanup_p99_bound_ms",
            form="{:g}",
        ),
        Row(f"RSS per idle connection at {sizes.idle:,} (KiB)", "idle.rss_per_connection", 1024, "{:,.1f}"),
        Row(
            f"asyncio tasks per idle connection at {sizes.idle:,}", "idle.tasks_per_connection", form="{:.2f}"
        ),
        Row(f"fan-out to 1 user x {sizes.fanout} connections (deliveries/s)", "fanout.deliveries_per_s"),
        Row(
            f"fan-out to 1 user x {sizes.fanout}: server CPU per delivery (us)",
            "fanout.server_cpu_us_per_delivery",
            form="{:.1f}",
        ),
        Row(
            f"fan-out to 1 user x {sizes.fanout}: load client CPU per delivery (us)",
            "fanout.client_cpu_us_per_delivery",
            form="{:.1f}",
        ),
        Row(f"{spread} connections (deliveries/s)", "spread.deliveries_per_s"),
        Row(f"{spread}: server CPU per delivery (us)", "spread.server_cpu_us_per_delivery", form="{:.1f}"),
        Row(
            f"{spread}: load client CPU per delivery (us)", "spread.client_cpu_us_per_delivery", form="{:.1f}"
        ),
        Row(f"{spread}: publish-to-delivery p50 (ms)", "spread.latency_p50_ms", form="{:,.1f}"),
        Row(f"{spread}: publish-to-delivery p99 (ms)", "spread.latency_p99_ms", form="{:,.1f}"),
        *held_rows(f"{sizes.hold:,} connections held", "hold"),
        *held_rows(f"ceiling: {sizes.ceiling:,} connections held", "ceiling"),
    ]


def median(results: Results, name: str, key: str) -> float | None:
    values = results.get(name, {}).get(key)
    return statistics.median(values) if values else None


def _cell(row: Row, values: list[float] | None) -> str:
    if not values:
        return "-"
    scaled = [value / row.scale for value in values]
    text = row.form.format(statistics.median(scaled))
    if len(scaled) > 1:
        text += f" ({row.form.format(min(scaled))}-{row.form.format(max(scaled))})"
    return text


def _ratio(results: Results, row: Row, name: str, base_name: str = BASE) -> str:
    base, other = median(results, base_name, row.key), median(results, name, row.key)
    if base is None or other is None or base == 0 or math.isinf(base):
        return "-"
    return f"{other / base:.2f}"


def table(results: Results, names: Sequence[str], sizes: Sizes) -> str:
    """:func:`grid` of every figure: ratios to bare, and of the :data:`PAIRS` both of which ran."""
    pairs = [(name, BASE) for name in names if name != BASE] if BASE in names else []
    pairs += [(name, base) for name, base in PAIRS if name in names and base in names]
    return grid(results, names, rows(sizes), pairs)


def grid(
    results: Results, names: Sequence[str], chosen: Sequence[Row], pairs: Sequence[tuple[str, str]]
) -> str:
    """A Markdown table, aligned for the terminal: each server's median (range) of each row that
    any of them measured, then the ratio of the medians of each pair ``(name, base)``."""
    header = ["figure", *names, *(f"{name}/{base}" for name, base in pairs)]
    lines = [
        [row.label, *(_cell(row, results[name].get(row.key)) for name in names)]
        + [_ratio(results, row, name, base) for name, base in pairs]
        for row in chosen
        if any(row.key in results[name] for name in names)
    ]
    widths = [max(len(line[column]) for line in [header, *lines]) for column in range(len(header))]

    def render(cells: list[str]) -> str:
        padded = [
            cells[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)),
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (width + 1) + (":" if column else "-") for column, width in enumerate(widths))
        + "|"
    )
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


@dataclass(frozen=True)
class Verdict:
    """One performance target of wsguard and whether this run met it."""

    target: str
    status: str
    detail: str
    binding: bool = False
    """A miss fails the run (its exit status), not only this line."""

    def line(self) -> str:
        return f"- {self.status}: {self.target} ({self.detail})"

    @property
    def missed(self) -> bool:
        return self.status == "not met"


GUARD = "wsguard"
UNMEASURED = "figure left out of this run"


def _judge(target: str, met: bool | None, detail: str, binding: bool = False) -> Verdict:
    if met is None:
        return Verdict(target, "not measured", UNMEASURED, binding)
    return Verdict(target, "met" if met else "not met", detail, binding)


def _ratio_target(results: Results, target: str, key: str, least: float) -> Verdict:
    guard, base = median(results, GUARD, key), median(results, BASE, key)
    if guard is None or not base:
        return _judge(target, None, "")
    return _judge(target, guard / base >= least, f"{guard / base:.2f}")


def _rss_target(results: Results) -> Verdict:
    target = "RSS per idle connection <= bare + 4 KiB"
    key = "idle.rss_per_connection"
    guard, base = median(results, GUARD, key), median(results, BASE, key)
    if guard is None or base is None:
        return _judge(target, None, "")
    return _judge(target, guard <= base + 4096, f"{guard / 1024:.1f} KiB against {base / 1024:.1f} + 4")


def _tasks_target(results: Results) -> Verdict:
    """At the printed precision: a task that happened to run during the sample is not a connection's."""
    tasks = median(results, GUARD, "idle.tasks_per_connection")
    met = None if tasks is None else round(tasks, 2) <= 1
    return _judge("asyncio tasks per idle connection <= 1", met, f"{tasks or 0:.2f}")


def _latency_target(results: Results, sizes: Sizes) -> Verdict:
    target = f"fan-out to {sizes.spread_users:,} users x {sizes.spread_per_user}: p50 and p99 reported"
    p50, p99 = (median(results, GUARD, f"spread.latency_{q}_ms") for q in ("p50", "p99"))
    met = None if p50 is None or p99 is None else True
    return _judge(target, met, f"p50 {p50 or 0:.1f} ms, p99 {p99 or 0:.1f} ms")


def _cleanup_target(results: Results) -> Verdict:
    """Exact, since 5 ms is one of the histogram's bucket bounds."""
    bound = median(results, GUARD, "churn.cleanup_p99_bound_ms")
    cleanups = median(results, GUARD, "churn.cleanups")
    met = None if bound is None else bound <= 5
    detail = f"99 % of {cleanups or 0:,.0f} cleanups took at most {bound or 0:g} ms"
    return _judge("cleanup p99 <= 5 ms during churn", met, detail)


def _hold_target(results: Results, sizes: Sizes) -> Verdict:
    target = f"{sizes.hold:,} connections reset: every count back to 0 within 1 s"
    to_zero = median(results, GUARD, "hold.to_zero_ms")
    if to_zero is None:
        return _judge(target, None, "", binding=True)
    detail = f"{to_zero:,.0f} ms" if math.isfinite(to_zero) else f"not within {sizes.hold_timeout:g} s"
    return _judge(target, to_zero <= 1000, detail, binding=True)


def _ceiling_target(results: Results, sizes: Sizes) -> Verdict:
    """One process near the descriptor limit: every connection held (the figure fails
    otherwise) with one asyncio task each (at the printed precision), then released.

    Not binding: at this size the release is bound by the server's CPU time per connection, on
    CPUs the load client's own teardown shares, so a busy machine alone can miss it; a leak fails
    the 10,000-connection hold, which is binding.
    """
    target = f"ceiling: {sizes.ceiling:,} held, 1 asyncio task each, every count at 0 within 1 s"
    to_zero, tasks, rss, teardown, cpu = (
        median(results, GUARD, f"ceiling.{name}")
        for name in (
            "to_zero_ms",
            "tasks_per_connection",
            "rss_per_connection",
            "teardown_ms",
            "release_server_cpu_ms",
        )
    )
    if to_zero is None or tasks is None or rss is None or teardown is None or cpu is None:
        return _judge(target, None, "")
    released = f"{to_zero:,.0f} ms" if math.isfinite(to_zero) else f"not within {sizes.hold_timeout:g} s"
    detail = (
        f"{tasks:.2f} tasks and {rss / 1024:.1f} KiB per connection; at 0 after {released}, "
        f"the load client's resets sent in {teardown:,.0f} ms, the server's CPU {cpu:,.0f} ms"
    )
    return _judge(target, round(tasks, 2) <= 1 and to_zero <= 1000, detail)


def verdicts(results: Results, sizes: Sizes) -> list[Verdict]:
    """wsguard's targets, judged on the medians (the cleanup on every cleanup of the churn rounds)."""
    return [
        _ratio_target(results, "connect/close churn >= 0.9 x bare", "churn.cycles_per_s", 0.9),
        _rss_target(results),
        _tasks_target(results),
        _ratio_target(
            results, f"fan-out to 1 user x {sizes.fanout} >= 0.95 x bare", "fanout.deliveries_per_s", 0.95
        ),
        _latency_target(results, sizes),
        _cleanup_target(results),
        _hold_target(results, sizes),
        _ceiling_target(results, sizes),
    ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def versions() -> str:
    def version(package: str) -> str:
        try:
            return f"{package} {metadata.version(package)}"
        except metadata.PackageNotFoundError:
            return f"{package} (not installed)"

    return ", ".join([f"Python {platform.python_version()}", *map(version, (*PACKAGES, "wsguard"))])


def wsguard_commit() -> str:
    """The checkout's commit, marked when it has uncommitted changes; empty outside a git checkout."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    return commit


def shown(command: str) -> str:
    """``command`` with this interpreter's path relative to the working directory, as typed."""
    executable = Path(sys.executable)
    if executable.is_relative_to(Path.cwd()):
        return command.replace(sys.executable, str(executable.relative_to(Path.cwd())))
    return command.replace(sys.executable, executable.name)


def command_line() -> str:
    return shown(shlex.join([sys.executable, *sys.argv]))


@dataclass(frozen=True)
class Context:
    """What the results file says about the run besides the figures."""

    started: datetime
    load_at_start: str
    load_at_end: str
    command: str
    notes: list[str]


def results_file(context: Context, figures: str, judged: list[Verdict]) -> str:
    commit = wsguard_commit()
    return "\n".join(
        [
            "# Benchmark results",
            "",
            "Written by `bench/run.py` (see [README.md](README.md)) and overwritten by each run.",
            "",
            f"- date: {context.started:%Y-%m-%d %H:%M} UTC",
            f"- command: `{context.command}`",
            f"- machine: {os.cpu_count()} CPUs, {cpu_model()}",
            f"- load average (1 / 5 / 15 min): {context.load_at_start} at the start, "
            f"{context.load_at_end} at the end",
            f"- versions: {versions()}" + (f" (commit {commit})" if commit else ""),
            *(f"- {note}" for note in context.notes),
            "",
            "## Figures",
            "",
            "Medians over the rounds, with the range when there were several; ratios of medians.",
            "",
            figures,
            "",
            "## Performance targets",
            "",
            *(verdict.line() for verdict in judged),
            "",
        ]
    )


def now() -> datetime:
    return datetime.now(UTC)
