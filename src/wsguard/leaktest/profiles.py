"""Profiles: how big each scenario is, how many rounds run, and the bounds a run must stay under.

The seed's own table (cleanup 300 to 1000 ms, 50 to 150 MB of growth) is kept as the upper limit
that every profile must stay under, and shown beside ours; our bounds are far tighter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

PROFILE_ENV = "WSGUARD_PROFILE"
COMPREHENSIVE_USERS_PER_CORE = 2
"""Users that ``comprehensive`` runs at once per core of the machine, by default: each is five
scenarios at once (about 32 connections at peak), and the load generator, the server and the
machine's other work share the cores. More than this on a loaded 2-core machine and the
generator's own event loop lags past its allowance, so the round would prove nothing."""


def machine_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class SeedBounds:
    """The seed's per-environment figures: its cleanup SLA, stress cycles and memory growth."""

    cleanup_ms: int
    stress_cycles: int
    memory_mb: int


SEED_BOUNDS: dict[str, SeedBounds] = {
    "ci": SeedBounds(cleanup_ms=1000, stress_cycles=50, memory_mb=50),
    "test": SeedBounds(cleanup_ms=500, stress_cycles=100, memory_mb=100),
    "dev": SeedBounds(cleanup_ms=300, stress_cycles=75, memory_mb=150),
    "staging": SeedBounds(cleanup_ms=750, stress_cycles=100, memory_mb=100),
    "prod": SeedBounds(cleanup_ms=500, stress_cycles=100, memory_mb=75),
}


@dataclass(frozen=True)
class Sizes:
    """How big one round of each scenario is."""

    tabs: int = 8
    tab_gap_s: float = 0.1
    burst_connections: int = 25
    burst_rate: float = 15.0
    reconnect_cycles: int = 15
    reconnect_hold_s: float = 0.2
    race_interval_s: float = 0.5
    race_duration_s: float = 10.0
    comprehensive_users: int = 4
    flood_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class Profile:
    """Rounds, sizes and bounds for one environment.

    ``first`` sizes the first round of every scenario (the warm-up, with every behavioural check);
    ``repeat`` sizes the measured rounds whose memory after each round gives the slope.

    Scenarios with a cheap connection cycle then run a churn phase: the same warm-up and measured
    round counts, each round ``churn_cycles`` cycles. Its allocated-blocks slope has to stay
    under ``churn_blocks_bound``, which one small object kept per cycle (one block) breaks.
    """

    name: str
    description: str
    cleanup_bound_s: float
    blocks_slope_bound: float
    rss_slope_bound: float
    rounds: int
    first: Sizes = field(default_factory=Sizes)
    repeat: Sizes = field(default_factory=Sizes)
    warmup_rounds: int = 2
    connection_limit: int = 20
    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 0.5
    close_timeout_s: float = 0.5
    retention_events: int = 8
    queue_limit_bytes: int = 65536
    demo_step_delay_s: float = 0.005
    settle_timeout_s: float = 5.0
    seed: SeedBounds | None = None
    churn_cycles: int = 0
    churn_blocks_bound: float = 0.5
    churn_rss_bound: float = 1024

    def __post_init__(self) -> None:
        if self.rounds < 5:
            raise ValueError(f"profile {self.name}: at least 5 measured rounds, got {self.rounds}")
        if self.warmup_rounds < 1:
            raise ValueError(f"profile {self.name}: at least 1 warm-up round")
        if self.seed is not None:
            self.check_within_seed(self.seed)

    def check_within_seed(self, seed: SeedBounds) -> None:
        """Refuse a profile whose bounds are looser than the seed's limits for the same name."""
        if self.cleanup_bound_s * 1000 > seed.cleanup_ms:
            raise ValueError(f"profile {self.name}: cleanup bound over the seed's {seed.cleanup_ms} ms")
        if self.repeat.reconnect_cycles > seed.stress_cycles:
            raise ValueError(f"profile {self.name}: stress cycles over the seed's {seed.stress_cycles}")
        if self.rss_growth_bound_mb() > seed.memory_mb:
            raise ValueError(f"profile {self.name}: memory bound over the seed's {seed.memory_mb} MB")

    def with_comprehensive_users(self, users: int) -> Profile:
        """This profile with ``users`` users in comprehensive's first round (the measured rounds
        keep their own size, or ``users`` if that is fewer)."""
        if users < 1:
            raise ValueError(f"comprehensive needs at least 1 user, not {users}")
        return replace(
            self,
            first=replace(self.first, comprehensive_users=users),
            repeat=replace(self.repeat, comprehensive_users=min(self.repeat.comprehensive_users, users)),
        )

    def sized_for(self, cores: int) -> Profile:
        """This profile with comprehensive's users capped at
        :data:`COMPREHENSIVE_USERS_PER_CORE` per core: the profile's figure on a machine big
        enough for it, fewer on a smaller one."""
        cap = max(1, COMPREHENSIVE_USERS_PER_CORE * cores)
        return self.with_comprehensive_users(min(self.first.comprehensive_users, cap))

    def heartbeat_reap_s(self) -> float:
        """The longest a half-open connection may live: one interval plus the timeout."""
        return self.heartbeat_interval_s + self.heartbeat_timeout_s

    def cycles_per_round(self) -> int:
        """About how many connection cycles one measured round of multi_tab and reconnect makes."""
        return self.repeat.tabs + self.repeat.reconnect_cycles

    def rss_growth_bound_mb(self) -> float:
        """What the resident-memory slope bounds allow over all measured rounds, in MB: of the
        scenario rounds or of the churn rounds, whichever allows more."""
        rounds = self.rss_slope_bound * self.cycles_per_round() * self.rounds
        churn = self.churn_rss_bound * self.churn_cycles * self.rounds
        return max(rounds, churn) / 1_000_000

    def server_flags(self) -> list[str]:
        """``wsguard serve`` flags for a server the harness starts itself.

        The per-user run limits are off: the scenarios start runs as fast as their rounds go,
        which is load for the leak checks, not abuse.
        """
        return [
            "--heartbeat-interval",
            str(self.heartbeat_interval_s),
            "--heartbeat-timeout",
            str(self.heartbeat_timeout_s),
            "--close-timeout",
            str(self.close_timeout_s),
            "--max-connections-per-user",
            str(self.connection_limit),
            "--queue-limit-bytes",
            str(self.queue_limit_bytes),
            "--retention-events",
            str(self.retention_events),
            "--demo-step-delay",
            str(self.demo_step_delay_s),
            "--metrics-allow-gc",
            "--run-rate-per-user",
            "0",
            "--max-runs-per-user",
            "0",
        ]


_FAST_REPEAT = Sizes(
    tabs=8,
    tab_gap_s=0.01,
    burst_connections=25,
    burst_rate=40.0,
    reconnect_cycles=8,
    reconnect_hold_s=0.02,
    race_interval_s=0.1,
    race_duration_s=0.5,
    comprehensive_users=2,
    flood_bytes=0,
)

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="continuous integration: the design's scenario sizes, short measured rounds, "
        "1000-cycle churn rounds",
        cleanup_bound_s=0.25,
        blocks_slope_bound=16,
        rss_slope_bound=16384,
        rounds=5,
        first=Sizes(race_duration_s=3.0, comprehensive_users=3),
        repeat=_FAST_REPEAT,
        heartbeat_interval_s=0.25,
        heartbeat_timeout_s=0.25,
        seed=SEED_BOUNDS["ci"],
        churn_cycles=1000,
    ),
    "test": Profile(
        name="test",
        description="a local test run: full first rounds, more measured rounds",
        cleanup_bound_s=0.15,
        blocks_slope_bound=16,
        rss_slope_bound=16384,
        rounds=8,
        first=Sizes(reconnect_cycles=30, comprehensive_users=6),
        repeat=replace(_FAST_REPEAT, reconnect_cycles=15),
        seed=SEED_BOUNDS["test"],
        churn_cycles=1000,
    ),
    "dev": Profile(
        name="dev",
        description="a developer's machine: full first rounds, quick measured rounds",
        cleanup_bound_s=0.1,
        blocks_slope_bound=16,
        rss_slope_bound=16384,
        rounds=6,
        first=Sizes(reconnect_cycles=25, comprehensive_users=4),
        repeat=_FAST_REPEAT,
        seed=SEED_BOUNDS["dev"],
        churn_cycles=1000,
    ),
    "staging": Profile(
        name="staging",
        description="a staging soak: stress cycles, many users, many measured rounds",
        cleanup_bound_s=0.2,
        blocks_slope_bound=16,
        rss_slope_bound=2048,
        rounds=10,
        first=Sizes(reconnect_cycles=50, comprehensive_users=10),
        repeat=replace(_FAST_REPEAT, reconnect_cycles=50, burst_connections=40),
        seed=SEED_BOUNDS["staging"],
        churn_cycles=2000,
        churn_rss_bound=512,
    ),
    "prod": Profile(
        name="prod",
        description="a production-like soak: the most cycles and users, the tightest memory bound",
        cleanup_bound_s=0.2,
        blocks_slope_bound=16,
        rss_slope_bound=1024,
        rounds=12,
        first=Sizes(reconnect_cycles=100, comprehensive_users=20),
        repeat=replace(_FAST_REPEAT, reconnect_cycles=100, burst_connections=40),
        seed=SEED_BOUNDS["prod"],
        churn_cycles=3000,
        churn_rss_bound=256,
    ),
    "demo": Profile(
        name="demo",
        description="a demonstration: every scenario, small, in well under two minutes on 2 cores",
        cleanup_bound_s=0.25,
        blocks_slope_bound=16,
        rss_slope_bound=16384,
        rounds=5,
        first=Sizes(tabs=8, reconnect_cycles=15, race_duration_s=4.0, comprehensive_users=3),
        repeat=_FAST_REPEAT,
        churn_cycles=500,
    ),
}

PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)


def default_profile_name(environ: Mapping[str, str] | None = None) -> str:
    """``WSGUARD_PROFILE`` if set, else ``ci`` when ``CI=true``, else ``dev``."""
    env = os.environ if environ is None else environ
    chosen = env.get(PROFILE_ENV, "").strip()
    if chosen:
        return chosen
    if env.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        return "ci"
    return "dev"


def get_profile(name: str) -> Profile:
    """The named profile, or ``KeyError`` naming the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}") from None
