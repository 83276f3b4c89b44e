"""The uvicorn versions the transport is tested with.

The protocol class and the server override uvicorn internals (the sans-I/O WebSocket protocol's
``send``, ``keepalive_timeout``, ``connection_lost`` and close timer, which took their present
shape in uvicorn 0.52.1; the server's ``on_tick``, ``handle_exit``, ``capture_signals`` and
``_log_started_message``), so a version outside the tested range is refused rather than trusted.
"""

import re

import uvicorn

TESTED_UVICORN = ((0, 52, 1), (0, 55, 0))
"""The lowest tested version, and the first version not tested."""


def _release(version: str) -> tuple[int, int, int]:
    parts = [int(match) for match in re.findall(r"\d+", version.split("+")[0])[:3]]
    major, minor, patch = [*parts, 0, 0, 0][:3]
    return major, minor, patch


def check_uvicorn_version(version: str = uvicorn.__version__) -> None:
    """Raise ``RuntimeError`` when ``version`` is outside the tested range."""
    lowest, first_untested = TESTED_UVICORN
    if not lowest <= _release(version) < first_untested:
        low = ".".join(map(str, lowest))
        high = ".".join(map(str, first_untested))
        raise RuntimeError(
            f"wsguard's transport is tested with uvicorn >={low},<{high}; uvicorn {version} is installed"
        )
