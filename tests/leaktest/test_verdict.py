"""The pure verdict functions: what counts as a leak, the slope, the histogram quantile."""

import math

import pytest

from wsguard.leaktest.verdict import (
    CONNECTIONS,
    FDS,
    REGISTRY,
    SOCKETS,
    STREAMS,
    TASKS,
    USERS,
    count_leaks,
    histogram_buckets,
    histogram_quantile,
    least_squares_slope,
    per_instance,
    slope_check,
)

BASELINE = {CONNECTIONS: 0.0, USERS: 0.0, REGISTRY: 0.0, TASKS: 4.0, FDS: 9.0}


def test_clean_sample_has_no_leaks() -> None:
    assert count_leaks(dict(BASELINE), BASELINE) == []


def test_fewer_tasks_or_fds_than_baseline_is_not_a_leak() -> None:
    assert count_leaks({**BASELINE, TASKS: 3.0, FDS: 8.0}, BASELINE) == []


def test_each_leaked_count_is_named_with_value_and_baseline() -> None:
    sample = {**BASELINE, CONNECTIONS: 8.0, REGISTRY: 16.0, TASKS: 6.0, FDS: 11.0}
    leaks = {leak.name: leak for leak in count_leaks(sample, BASELINE)}
    assert set(leaks) == {CONNECTIONS, REGISTRY, TASKS, FDS}
    assert leaks[CONNECTIONS].describe() == ("wsguard_connections_active = 8 (expected 0; baseline 0)")
    assert leaks[TASKS].describe() == "wsguard_tasks_active = 6 (expected 4; baseline 4)"
    assert leaks[FDS].value == 11.0


def test_a_missing_count_is_a_leak() -> None:
    sample = {k: v for k, v in BASELINE.items() if k != USERS}
    leaks = count_leaks(sample, BASELINE)
    assert [(leak.name, leak.value) for leak in leaks] == [(USERS, None)]
    assert "missing" in leaks[0].describe()


def test_a_stream_left_open_is_named_by_its_transport_on_each_instance() -> None:
    """A server that counts its connections per transport says which one kept a connection; one
    that does not is not held to those counts."""
    assert count_leaks(dict(BASELINE), BASELINE) == []
    clean = {**BASELINE, SOCKETS: 0.0, STREAMS: 0.0}
    instance = 'wsguard_transport_connections{transport="sse",instance="1"}'
    sample = {**clean, CONNECTIONS: 2.0, STREAMS: 2.0, per_instance(STREAMS, 1): 2.0}
    leaks = {leak.name: leak for leak in count_leaks(sample, clean)}
    assert per_instance(STREAMS, 1) == instance
    assert set(leaks) == {CONNECTIONS, STREAMS, instance}
    assert leaks[STREAMS].describe() == (
        'wsguard_transport_connections{transport="sse"} = 2 (expected 0; baseline 0)'
    )


def test_slope_of_a_line_is_exact() -> None:
    xs = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert least_squares_slope(xs, [3 * x + 7 for x in xs]) == pytest.approx(3.0)
    assert least_squares_slope(xs, [5.0] * 5) == 0.0
    assert least_squares_slope([1.0, 1.0], [1.0, 9.0]) == 0.0


def test_slope_needs_matching_points() -> None:
    with pytest.raises(ValueError, match="2 points"):
        least_squares_slope([1.0], [1.0])
    with pytest.raises(ValueError, match="y values"):
        least_squares_slope([1.0, 2.0], [1.0])


def test_one_small_object_per_cycle_trips_a_bound_under_one() -> None:
    cycles = [8.0 * n for n in range(1, 6)]
    leaking = [200_000 + c for c in cycles]
    check = slope_check("blocks", "blocks", cycles, leaking, bound=0.5)
    assert not check.passed
    assert (
        "grows 1 blocks per connection cycle, 1 over the later half (bound 0.5) over 5 measured rounds"
        in (check.describe())
    )
    assert slope_check("blocks", "blocks", cycles, [200_000.0] * 5, bound=0.5).passed
    churn = slope_check("blocks", "blocks", cycles, leaking, bound=0.5, phase="churn")
    assert "over 5 measured churn rounds" in churn.describe()


def test_a_pool_that_fills_in_the_first_rounds_is_not_a_leak_but_steady_growth_is() -> None:
    """The blocks of a cluster's reconnect churn (sum of 4 instances): growth in the first
    measured rounds (the Redis client's pool reaching its size), then none."""
    cycles = [1000.0 * n for n in range(1, 7)]
    filling = [918_965.0, 919_462.0, 919_984.0, 921_321.0, 921_284.0, 921_236.0]
    check = slope_check("blocks", "blocks", cycles, filling, bound=0.5, phase="churn")
    assert check.slope > 0.5
    assert check.later_slope is not None
    assert check.later_slope < 0
    assert check.passed
    steady = [900_000.0 + 0.6 * c + (300.0 if n % 2 else -300.0) for n, c in enumerate(cycles)]
    assert not slope_check("blocks", "blocks", cycles, steady, bound=0.5, phase="churn").passed
    three = slope_check("blocks", "blocks", cycles[:3], filling[:3], bound=0.5)
    assert three.later_slope is None
    assert not three.passed


HISTOGRAM = "wsguard_cleanup_seconds"


def _buckets(counts: dict[str, float]) -> dict[str, float]:
    return {f'{HISTOGRAM}_bucket{{le="{le}"}}': n for le, n in counts.items()}


def test_histogram_buckets_are_read_from_flat_samples() -> None:
    samples = {**_buckets({"0.01": 2, "0.1": 5, "+Inf": 5}), f"{HISTOGRAM}_count": 5.0}
    assert histogram_buckets(samples, HISTOGRAM) == {0.01: 2, 0.1: 5, math.inf: 5}


def test_quantile_of_the_observations_between_two_scrapes() -> None:
    before = {0.01: 10.0, 0.1: 10.0, math.inf: 10.0}
    after = {0.01: 10.0, 0.1: 110.0, math.inf: 110.0}
    assert histogram_quantile(0.99, before, after) == pytest.approx(0.01 + 0.09 * 0.99)
    assert histogram_quantile(0.99, after, after) is None
    overflow = {0.01: 10.0, 0.1: 10.0, math.inf: 20.0}
    assert histogram_quantile(0.99, before, overflow) == 0.1
