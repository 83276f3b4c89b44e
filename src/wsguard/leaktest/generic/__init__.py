"""Leak checks for any ASGI WebSocket application wrapped in :mod:`wsguard.probe`.

The scenarios speak no protocol of wsguard's: they connect, optionally send a script of messages,
talk, stall and leave; the verdicts read only the probe's counts.
"""

from wsguard.leaktest.generic.runner import run_generic
from wsguard.leaktest.generic.scenarios import DEFAULT_GENERIC_SCENARIOS, GENERIC_SCENARIO_NAMES
from wsguard.leaktest.generic.target import GenericSizes, GenericTarget

__all__ = [
    "DEFAULT_GENERIC_SCENARIOS",
    "GENERIC_SCENARIO_NAMES",
    "GenericSizes",
    "GenericTarget",
    "run_generic",
]
