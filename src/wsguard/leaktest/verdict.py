"""Pure verdict functions: exact count checks, least-squares slopes and histogram quantiles.

No I/O here, so that what "leaked" means is unit-tested on its own.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CONNECTIONS = "wsguard_connections_active"
USERS = "wsguard_users_active"
REGISTRY = "wsguard_registry_entries"
TASKS = "wsguard_tasks_active"
FDS = "process_open_fds"
BLOCKS = "wsguard_python_allocated_blocks"
RSS = "process_resident_memory_bytes"

LEASE_PATTERN = "wsguard:u:*:leases"
LEASE_KEYS = f'redis_keys{{pattern="{LEASE_PATTERN}"}}'
"""Not a server metric: the harness counts a cluster's lease keys in its Redis itself."""
SOCKETS = 'wsguard_transport_connections{transport="websocket"}'
STREAMS = 'wsguard_transport_connections{transport="sse"}'
"""Of the open connections, the WebSockets and the event streams: which transport kept one."""

MUST_BE_ZERO: tuple[str, ...] = (CONNECTIONS, USERS, REGISTRY, SOCKETS, STREAMS, LEASE_KEYS)
MUST_RETURN_TO_BASELINE: tuple[str, ...] = (TASKS, FDS)
LEAK_COUNTS: tuple[str, ...] = MUST_BE_ZERO + MUST_RETURN_TO_BASELINE
OPTIONAL_COUNTS = frozenset({LEASE_KEYS, SOCKETS, STREAMS})
"""Counts checked only when the sample or the baseline has them (a cluster's Redis; a server
that counts its connections per transport)."""


def per_instance(name: str, index: int) -> str:
    """The flat-sample key of one cluster instance's ``name``: its labels and ``instance``."""
    return f'{_instance_prefix(name)}{index}"}}'


def _instance_prefix(name: str) -> str:
    """What every per-instance key of ``name`` starts with, up to the instance's number."""
    if name.endswith("}"):
        return f'{name[:-1]},instance="'
    return f'{name}{{instance="'


def _with_instances(sample: Mapping[str, float], baseline: Mapping[str, float], name: str) -> list[str]:
    """``name`` and its per-instance keys, as the sample or the baseline has them."""
    prefix = _instance_prefix(name)
    labelled = {key for key in (*sample, *baseline) if key.startswith(prefix)}
    return [name, *sorted(labelled)]


@dataclass(frozen=True)
class CountLeak:
    """One count that is not where it must be once the clients are gone."""

    name: str
    value: float | None
    expected: float
    baseline: float | None

    def describe(self) -> str:
        value = "missing" if self.value is None else _number(self.value)
        baseline = "missing" if self.baseline is None else _number(self.baseline)
        return f"{self.name} = {value} (expected {_number(self.expected)}; baseline {baseline})"


def count_leaks(sample: Mapping[str, float], baseline: Mapping[str, float]) -> list[CountLeak]:
    """Every count of ``sample`` off its mark: the zero counts at 0, the others at ``baseline``.

    A count missing from the sample is a leak too: a server that stops reporting it proves nothing.
    A count missing from the baseline can only be checked against 0. In a cluster sample every
    instance's own counts (``name{instance="N"}``) are held to the same marks as the sums.
    """
    leaks: list[CountLeak] = []
    for count in MUST_BE_ZERO:
        if count in OPTIONAL_COUNTS and count not in sample and count not in baseline:
            continue
        for name in _with_instances(sample, baseline, count):
            value = sample.get(name)
            if value is None or value != 0:
                leaks.append(CountLeak(name, value, 0.0, baseline.get(name)))
    for count in MUST_RETURN_TO_BASELINE:
        for name in _with_instances(sample, baseline, count):
            value = sample.get(name)
            expected = baseline.get(name)
            if expected is None:
                continue
            if value is None or value > expected:
                leaks.append(CountLeak(name, value, expected, expected))
    return leaks


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The slope of the least-squares line through ``(xs, ys)``; 0 when ``xs`` do not vary."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if len(xs) < 2:
        raise ValueError("a slope needs at least 2 points")
    if len(set(xs)) == 1:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


LATER_HALF_FROM = 4
"""Measured rounds from which the later half's slope is fitted too (at least two points)."""


@dataclass(frozen=True)
class SlopeCheck:
    """A memory signal over the measured rounds: its slope per connection cycle and its bound."""

    signal: str
    unit: str
    cycles: tuple[float, ...]
    values: tuple[float, ...]
    slope: float
    bound: float
    phase: str = "rounds"
    later_slope: float | None = None
    """The slope over the later half of the rounds (None with fewer than four): a leak keeps
    growing, while a pool or cache that fills up to its size in the first measured rounds (the
    Redis client's connections, a token cache) stops."""
    confirmed: bool = True
    """False when some measured round's load generator could not keep its schedule: the server's
    memory then follows what the overload made it do (tabs reaped, rounds cut short), which a
    faster machine would not repeat, so a slope over the bound is not a leak."""

    @property
    def passed(self) -> bool:
        """Within the bound over all the measured rounds, or over their later half."""
        return self.slope <= self.bound or (self.later_slope is not None and self.later_slope <= self.bound)

    def describe(self) -> str:
        later = "" if self.later_slope is None else f", {self.later_slope:.3g} over the later half"
        return (
            f"{self.signal} grows {self.slope:.3g} {self.unit} per connection cycle{later} "
            f"(bound {self.bound:g}) over {len(self.values)} measured {_phase_rounds(self.phase)}, "
            f"{_number(self.values[0])} -> {_number(self.values[-1])}"
        )


def slope_check(
    signal: str,
    unit: str,
    cycles: Sequence[float],
    values: Sequence[float],
    bound: float,
    *,
    phase: str = "rounds",
) -> SlopeCheck:
    """Fit ``values`` against cumulative connection ``cycles``, over all of them and over their
    later half, and compare the slopes to ``bound``."""
    slope = least_squares_slope(cycles, values)
    half = len(values) // 2
    later = least_squares_slope(cycles[half:], values[half:]) if len(values) >= LATER_HALF_FROM else None
    return SlopeCheck(signal, unit, tuple(cycles), tuple(values), slope, bound, phase, later)


def _phase_rounds(phase: str) -> str:
    return "rounds" if phase == "rounds" else f"{phase} rounds"


def histogram_buckets(samples: Mapping[str, float], name: str) -> dict[float, float]:
    """The cumulative buckets ``{upper bound: count}`` of histogram ``name`` in flat samples."""
    prefix = f'{name}_bucket{{le="'
    buckets: dict[float, float] = {}
    for key, value in samples.items():
        if key.startswith(prefix):
            upper = key[len(prefix) :].split('"', 1)[0]
            buckets[float(upper)] = value
    return buckets


def histogram_quantile(
    quantile: float, before: Mapping[float, float], after: Mapping[float, float]
) -> float | None:
    """The ``quantile`` of the observations made between two scrapes of a cumulative histogram.

    Like Prometheus' ``histogram_quantile``: linear within the bucket it falls in; the upper bound
    of the last finite bucket when it falls in ``+Inf``; ``None`` when nothing was observed.
    """
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = quantile * counts[-1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return lower_bound


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
