"""Profiles: what each one makes the harness and the server do, and what it refuses."""

import argparse
from dataclasses import replace

import pytest

from wsguard.cli import configure_serve, settings_from
from wsguard.leaktest.profiles import (
    PROFILES,
    SEED_BOUNDS,
    Profile,
    SeedBounds,
    default_profile_name,
    get_profile,
)
from wsguard.leaktest.report import render_profiles


@pytest.mark.parametrize("name", list(PROFILES))
def test_the_server_a_profile_starts_has_the_profile_s_settings(name: str) -> None:
    profile = PROFILES[name]
    parser = argparse.ArgumentParser()
    configure_serve(parser)
    settings = settings_from(parser.parse_args(["--dev", *profile.server_flags()]), {})
    assert settings.heartbeat_interval == profile.heartbeat_interval_s
    assert settings.heartbeat_timeout == profile.heartbeat_timeout_s
    assert settings.close_timeout == profile.close_timeout_s
    assert settings.max_connections_per_user == profile.connection_limit
    assert settings.queue_limit_bytes == profile.queue_limit_bytes
    assert settings.retention_events == profile.retention_events


@pytest.mark.parametrize(
    ("looser", "complaint"),
    [
        ({"cleanup_bound_s": 0.6}, "cleanup bound over the seed's 500 ms"),
        ({"rss_slope_bound": 1e9}, "memory bound over the seed's 75 MB"),
    ],
)
def test_a_profile_looser_than_its_seed_is_refused(looser: dict[str, float], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        replace(PROFILES["prod"], **looser)  # type: ignore[arg-type]


def test_more_stress_cycles_than_the_seed_is_refused() -> None:
    prod = PROFILES["prod"]
    with pytest.raises(ValueError, match="stress cycles over the seed's 100"):
        replace(prod, repeat=replace(prod.repeat, reconnect_cycles=101))
    strict = SeedBounds(cleanup_ms=1000, stress_cycles=1000, memory_mb=1)
    with pytest.raises(ValueError, match="memory bound over the seed's 1 MB"):
        prod.check_within_seed(strict)


def test_fewer_than_5_measured_rounds_or_no_warm_up_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        Profile("x", "", cleanup_bound_s=0.1, blocks_slope_bound=1, rss_slope_bound=1, rounds=4)
    with pytest.raises(ValueError, match="at least 1 warm-up"):
        replace(PROFILES["ci"], warmup_rounds=0)


def test_memory_growth_bound_is_the_slope_over_every_measured_cycle() -> None:
    profile = replace(PROFILES["ci"], seed=None, rss_slope_bound=1000.0, rounds=5, churn_cycles=0)
    cycles = profile.repeat.tabs + profile.repeat.reconnect_cycles
    assert profile.rss_growth_bound_mb() == pytest.approx(1000.0 * cycles * 5 / 1e6)
    churning = replace(profile, churn_cycles=2000, churn_rss_bound=500.0)
    assert churning.rss_growth_bound_mb() == pytest.approx(500.0 * 2000 * 5 / 1e6)


@pytest.mark.parametrize(("cores", "users"), [(1, 2), (2, 4), (4, 8), (64, 20)])
# 2 users per core, up to the profile's 20
def test_comprehensive_is_sized_to_the_machine(cores: int, users: int) -> None:
    sized = PROFILES["prod"].sized_for(cores)
    assert sized.first.comprehensive_users == users
    assert sized.repeat.comprehensive_users == min(PROFILES["prod"].repeat.comprehensive_users, users)
    assert sized.first.reconnect_cycles == PROFILES["prod"].first.reconnect_cycles


def test_more_comprehensive_users_can_be_asked_for() -> None:
    assert PROFILES["prod"].with_comprehensive_users(40).first.comprehensive_users == 40
    assert PROFILES["ci"].with_comprehensive_users(1).repeat.comprehensive_users == 1
    with pytest.raises(ValueError, match="at least 1 user"):
        PROFILES["ci"].with_comprehensive_users(0)


def test_selection_by_variable_and_ci() -> None:
    assert default_profile_name({"WSGUARD_PROFILE": "staging", "CI": "true"}) == "staging"
    assert default_profile_name({"CI": "true"}) == "ci"
    assert default_profile_name({}) == "dev"
    with pytest.raises(KeyError, match="known: ci"):
        get_profile("nope")


def test_profile_table_shows_ours_beside_the_seed() -> None:
    table = render_profiles()
    for name, seed in SEED_BOUNDS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"{name} "))
        assert f"{PROFILES[name].cleanup_bound_s * 1000:g} ({seed.cleanup_ms})" in row
    assert "demo" in table
