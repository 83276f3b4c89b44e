"""wsguard's own transport on uvicorn: what stock uvicorn does not give a WebSocket app.

- :func:`protocol_class` builds the WebSocket protocol class for ``uvicorn.Config(ws=...)``.
- :func:`http_protocol_class` builds the HTTP protocol class for ``uvicorn.Config(http=...)``:
  head limits and timers, the per-address cap and the descriptor reserve, sharing an :class:`Edge`.
- :class:`WSGuardServer` drains the app before uvicorn's shutdown.
- :func:`run` serves an app with both; :class:`TransportOptions` carries the settings.
- :class:`TransportControl` is what the app finds in ``scope["extensions"]["wsguard.transport"]``.
- :func:`check_uvicorn` tells whether the installed uvicorn has what the others override.

The names are imported on first use, so that the check runs before the modules that subclass
uvicorn's internals are loaded.
"""

from typing import TYPE_CHECKING

from wsguard.lazy import lazy_exports

if TYPE_CHECKING:
    from wsguard.transport.compat import TESTED_UVICORN, UnsupportedUvicorn, check_uvicorn
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
    "UnsupportedUvicorn",
    "WSGuardServer",
    "build_config",
    "check_uvicorn",
    "http_protocol_class",
    "protocol_class",
    "run",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TESTED_UVICORN": "wsguard.transport.compat",
        "UnsupportedUvicorn": "wsguard.transport.compat",
        "check_uvicorn": "wsguard.transport.compat",
        "EXTENSION_KEY": "wsguard.transport.control",
        "TransportControl": "wsguard.transport.control",
        "EDGE_EXTENSION_KEY": "wsguard.transport.edge",
        "Edge": "wsguard.transport.edge",
        "EdgeLimits": "wsguard.transport.edge",
        "http_protocol_class": "wsguard.transport.http_protocol",
        "protocol_class": "wsguard.transport.protocol",
        "TransportOptions": "wsguard.transport.runner",
        "build_config": "wsguard.transport.runner",
        "run": "wsguard.transport.runner",
        "Drain": "wsguard.transport.server",
        "WSGuardServer": "wsguard.transport.server",
    },
    globals(),
)
