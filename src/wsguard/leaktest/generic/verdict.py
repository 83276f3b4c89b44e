"""What "leaked" means for any application: the probe's counts back at their baseline."""

from __future__ import annotations

from collections.abc import Mapping

from wsguard.leaktest.verdict import CountLeak
from wsguard.probe import APP_COUNT, FDS, RSS, SCOPES_OPEN, TASKS

PROBE_COUNTS: tuple[str, ...] = (SCOPES_OPEN, TASKS, FDS)
"""Counts every probe reports; the application's own named counts come on top."""


def app_counts(*samples: Mapping[str, float]) -> list[str]:
    """The keys of the application's named counts in any of ``samples``, sorted."""
    return sorted({key for sample in samples for key in sample if key.startswith(APP_COUNT + "{")})


def generic_count_leaks(sample: Mapping[str, float], baseline: Mapping[str, float]) -> list[CountLeak]:
    """Every probe count and named application count of ``sample`` above its baseline.

    A count the baseline lacks (a name the application registered later) is held to 0; a count
    the sample lacks is a leak, since a probe that stops reporting it proves nothing.
    """
    if SCOPES_OPEN not in baseline:
        raise ValueError(f"the baseline has no {SCOPES_OPEN}: is the probe URL a wsguard probe?")
    leaks: list[CountLeak] = []
    for name in (*PROBE_COUNTS, *app_counts(sample, baseline)):
        expected = baseline.get(name, 0.0)
        value = sample.get(name)
        if value is None or value > expected:
            leaks.append(CountLeak(name, value, expected, baseline.get(name)))
    return leaks


def stall_growth_leak(
    before: Mapping[str, float],
    during: Mapping[str, float],
    sent_bytes: int,
    fraction: float,
    floor_bytes: float,
) -> CountLeak | None:
    """The resident memory the application gained while a reader stalled, when over ``fraction``
    of the bytes it was asked to send that reader and over ``floor_bytes``; else ``None``."""
    if RSS not in before or RSS not in during:
        return CountLeak(f"{RSS} while a reader stalled", during.get(RSS), 0.0, before.get(RSS))
    allowed = before[RSS] + max(floor_bytes, fraction * sent_bytes)
    if during[RSS] <= allowed:
        return None
    return CountLeak(f"{RSS} while a reader stalled", during[RSS], allowed, before[RSS])
