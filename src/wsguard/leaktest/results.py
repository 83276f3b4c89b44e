"""What a leak-check run found: per round, per scenario and for the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field

from wsguard.leaktest.probes import Sample
from wsguard.leaktest.verdict import CountLeak, SlopeCheck

PASS = "pass"
LEAK = "leak"
FAIL = "fail"
ERROR = "error"

ROUNDS = "rounds"
"""The phase of scenario rounds: every behavioural check, tens of connections each."""
CHURN = "churn"
"""The phase of churn rounds: hundreds of one cheap connection cycle each, for the memory slope."""


@dataclass
class RoundRecord:
    """One round: its size, its failures, its counts once settled and its memory."""

    index: int
    warmup: bool
    connections: int
    events: int
    failures: list[str]
    leaks: list[CountLeak]
    settle_s: float | None
    blocks: float | None
    rss: float | None
    duration_s: float
    phase: str = ROUNDS


@dataclass
class ScenarioReport:
    """Everything one scenario found, with the samples of its time on the server."""

    name: str
    description: str
    fresh_server: bool
    rounds: list[RoundRecord] = field(default_factory=list)
    baseline: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)
    slopes: list[SlopeCheck] = field(default_factory=list)
    cleanup_p99_s: float | None = None
    errors: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def connections(self) -> int:
        return sum(r.connections for r in self.rounds)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.rounds)

    @property
    def leaks(self) -> list[str]:
        found = [f"round {r.index}: {leak.describe()}" for r in self.rounds for leak in r.leaks]
        found.extend(check.describe() for check in self.slopes if not check.passed)
        return found

    @property
    def failures(self) -> list[str]:
        return [f"round {r.index}: {failure}" for r in self.rounds for failure in r.failures]

    @property
    def verdict(self) -> str:
        if self.errors:
            return ERROR
        if self.leaks:
            return LEAK
        if self.failures:
            return FAIL
        return PASS

    @property
    def reasons(self) -> list[str]:
        """Why the verdict is what it is: errors, then leaks, then failed checks."""
        return [*self.errors, *self.leaks, *self.failures]

    def slope(self, signal: str, phase: str = ROUNDS) -> SlopeCheck | None:
        return next((c for c in self.slopes if c.signal == signal and c.phase == phase), None)


@dataclass
class RunReport:
    """A whole run: the profile, where it ran and every scenario's report."""

    profile: str
    target: str
    started_at: str
    scenarios: list[ScenarioReport] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(s.verdict == PASS for s in self.scenarios)
