"""Helpers for testing against a real wsguard server process: start it, scrape it, wait on it."""

from wsguard.processes.metrics import parse_metrics
from wsguard.processes.process import IDLE_COUNTS, ServerProcess, StartServer, free_port
from wsguard.processes.script import script_parser, script_settings
from wsguard.processes.wait import eventually, eventually_async

__all__ = [
    "IDLE_COUNTS",
    "ServerProcess",
    "StartServer",
    "eventually",
    "eventually_async",
    "free_port",
    "parse_metrics",
    "script_parser",
    "script_settings",
]
