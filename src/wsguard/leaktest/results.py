"""What a leak-check run found: per round, per scenario and for the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field

from wsguard.leaktest.load import LoadFigures
from wsguard.leaktest.sampling import Sample
from wsguard.leaktest.verdict import CountLeak, SlopeCheck

PASS = "pass"
LEAK = "leak"
FAIL = "fail"
ERROR = "error"
INCONCLUSIVE = "inconclusive"
"""The load generator could not keep its own schedule: neither a pass nor a finding."""

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
    violations: list[str] = field(default_factory=list)
    """States no generator can cause (see ``RoundResult``): failures whatever the load."""
    notes: list[str] = field(default_factory=list)
    """Figures reported whatever the verdict (reaping delays, memory while a reader stalls)."""
    load: LoadFigures | None = None
    overload: str | None = None
    """Why the round proves nothing (the generator lagged past its allowance), or None. The
    round's failures are then unconfirmed; its count leaks are only kept once they outlasted
    the settle timeout, which no lag of the generator explains."""


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
        found.extend(check.describe() for check in self.slopes if not check.passed and check.confirmed)
        return found

    @property
    def failures(self) -> list[str]:
        """Violations of every round, and failed checks of the rounds whose generator kept its
        schedule."""
        found: list[str] = []
        for r in self.rounds:
            found.extend(f"round {r.index}: {violation}" for violation in r.violations)
            if r.overload is None:
                found.extend(f"round {r.index}: {failure}" for failure in r.failures)
        return found

    @property
    def inconclusive(self) -> list[str]:
        """Each overloaded round's figures, then what it saw that a faster generator must confirm."""
        found: list[str] = []
        for r in self.rounds:
            if r.overload is not None:
                found.append(f"round {r.index}: {r.overload}")
                found.extend(f"round {r.index}: unconfirmed: {failure}" for failure in r.failures)
        found.extend(
            f"unconfirmed: {check.describe()}, over rounds whose generator was overloaded"
            for check in self.slopes
            if not check.passed and not check.confirmed
        )
        return found

    @property
    def verdict(self) -> str:
        if self.errors:
            return ERROR
        if self.leaks:
            return LEAK
        if self.failures:
            return FAIL
        if self.inconclusive:
            return INCONCLUSIVE
        return PASS

    @property
    def reasons(self) -> list[str]:
        """Why the verdict is what it is: errors, leaks, failed checks, then overloaded rounds."""
        return [*self.errors, *self.leaks, *self.failures, *self.inconclusive]

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
    transport: str = "websocket"
    """What the tabs connected over: ``websocket`` or ``sse`` (event streams)."""

    @property
    def passed(self) -> bool:
        return all(s.verdict == PASS for s in self.scenarios)

    @property
    def inconclusive(self) -> bool:
        """Nothing found, but some scenario's generator could not keep its schedule."""
        verdicts = {s.verdict for s in self.scenarios}
        return INCONCLUSIVE in verdicts and verdicts <= {PASS, INCONCLUSIVE}
