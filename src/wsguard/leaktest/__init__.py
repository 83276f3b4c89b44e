"""The production-scenario leak harness: real clients, a real server, exact verdicts."""

from wsguard.leaktest.client import Target
from wsguard.leaktest.profiles import PROFILES, Profile, get_profile
from wsguard.leaktest.results import RunReport, ScenarioReport
from wsguard.leaktest.runner import external_server, managed_servers, run_leakcheck
from wsguard.leaktest.scenarios import SCENARIO_NAMES

__all__ = [
    "PROFILES",
    "SCENARIO_NAMES",
    "Profile",
    "RunReport",
    "ScenarioReport",
    "Target",
    "external_server",
    "get_profile",
    "managed_servers",
    "run_leakcheck",
]
