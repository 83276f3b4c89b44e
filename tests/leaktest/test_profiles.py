"""Profiles: the seed's table kept as upper limits, ours tighter, chosen by flag or variable."""

from dataclasses import replace

import pytest

from wsguard.leaktest.profiles import (
    PROFILES,
    SEED_BOUNDS,
    Profile,
    default_profile_name,
    get_profile,
)
from wsguard.leaktest.report import render_profiles


def test_seed_table_is_kept() -> None:
    assert {n: b.cleanup_ms for n, b in SEED_BOUNDS.items()} == {
        "ci": 1000,
        "test": 500,
        "dev": 300,
        "staging": 750,
        "prod": 500,
    }
    assert [SEED_BOUNDS[n].stress_cycles for n in SEED_BOUNDS] == [50, 100, 75, 100, 100]
    assert [SEED_BOUNDS[n].memory_mb for n in SEED_BOUNDS] == [50, 100, 150, 100, 75]


def test_every_seeded_profile_is_far_tighter_than_the_seed() -> None:
    assert PROFILES["ci"].cleanup_bound_s == 0.25
    for name, seed in SEED_BOUNDS.items():
        profile = PROFILES[name]
        assert profile.seed == seed
        assert profile.cleanup_bound_s * 1000 <= seed.cleanup_ms / 2
        assert profile.rss_growth_bound_mb() <= seed.memory_mb / 2
        assert profile.rounds >= 5
        assert profile.warmup_rounds >= 1


def test_every_seeded_profile_churns_enough_for_one_object_per_cycle_to_trip() -> None:
    for name in SEED_BOUNDS:
        profile = PROFILES[name]
        assert profile.churn_cycles >= 1000
        assert profile.churn_blocks_bound <= 0.5


def test_a_profile_looser_than_the_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="cleanup bound"):
        replace(PROFILES["dev"], cleanup_bound_s=0.5)
    with pytest.raises(ValueError, match="at least 5"):
        Profile("x", "", cleanup_bound_s=0.1, blocks_slope_bound=1, rss_slope_bound=1, rounds=4)


def test_selection_by_variable_and_ci() -> None:
    assert default_profile_name({"WSGUARD_PROFILE": "staging", "CI": "true"}) == "staging"
    assert default_profile_name({"CI": "true"}) == "ci"
    assert default_profile_name({}) == "dev"
    with pytest.raises(KeyError, match="known: ci"):
        get_profile("nope")


def test_profile_table_shows_ours_beside_the_seed() -> None:
    table = render_profiles()
    assert "250 (1000)" in table
    assert "demo" in table
