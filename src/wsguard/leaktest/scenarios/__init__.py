"""The production scenarios, by name, in the order a full run takes them."""

from wsguard.leaktest.scenarios.base import RoundResult, Scenario, ScenarioContext
from wsguard.leaktest.scenarios.cleanup_race import CleanupRace
from wsguard.leaktest.scenarios.cold_start_burst import ColdStartBurst
from wsguard.leaktest.scenarios.comprehensive import Comprehensive
from wsguard.leaktest.scenarios.context_consistency import ContextConsistency
from wsguard.leaktest.scenarios.multi_tab import MultiTab
from wsguard.leaktest.scenarios.reconnect_cycles import ReconnectCycles

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        MultiTab(),
        ContextConsistency(),
        ColdStartBurst(),
        ReconnectCycles(),
        CleanupRace(),
        Comprehensive(),
    )
}
SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)

__all__ = ["SCENARIOS", "SCENARIO_NAMES", "RoundResult", "Scenario", "ScenarioContext"]
