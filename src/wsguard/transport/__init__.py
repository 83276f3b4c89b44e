"""wsguard's own transport on uvicorn: what stock uvicorn does not give a WebSocket app.

- :func:`protocol_class` builds the WebSocket protocol class for ``uvicorn.Config(ws=...)``.
- :func:`http_protocol_class` builds the HTTP protocol class for ``uvicorn.Config(http=...)``:
  head limits and timers, the per-address cap and the descriptor reserve, sharing an :class:`Edge`.
- :class:`WSGuardServer` drains the app before uvicorn's shutdown.
- :func:`run` serves an app with both; :class:`TransportOptions` carries the settings.
- :class:`TransportControl` is what the app finds in ``scope["extensions"]["wsguard.transport"]``.
"""

from wsguard.transport.compat import TESTED_UVICORN, check_uvicorn_version
from wsguard.transport.control import EXTENSION_KEY, TransportControl
from wsguard.transport.edge import EDGE_EXTENSION_KEY, Edge, EdgeLimits
from wsguard.transport.http_protocol import http_protocol_class
from wsguard.transport.protocol import protocol_class
from wsguard.transport.runner import TransportOptions, build_config, run
from wsguard.transport.server import Drain, WSGuardServer

__all__ = [
    "EDGE_EXTENSION_KEY",
    "EXTENSION_KEY",
    "TESTED_UVICORN",
    "Drain",
    "Edge",
    "EdgeLimits",
    "TransportControl",
    "TransportOptions",
    "WSGuardServer",
    "build_config",
    "check_uvicorn_version",
    "http_protocol_class",
    "protocol_class",
    "run",
]
