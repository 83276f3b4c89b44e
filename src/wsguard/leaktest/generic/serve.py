"""Serve an ASGI application (an import string) under uvicorn with the probe enabled.

``python -m wsguard.leaktest.generic.serve myapp.main:app --port 8000`` imports the application
with ``WSGUARD_PROBE=1`` set (so that its own ``ProbeMiddleware``, with its named counts, is
enabled) and wraps it in one more probe at ``--probe-path``, unless it is a probe already.
"""

from __future__ import annotations

import argparse
import os
import sys

from wsguard.flags import describe_flags
from wsguard.probe import DEFAULT_PATH, ENABLE_ENV, ProbeMiddleware


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsguard.leaktest.generic.serve")
    parser.add_argument("app", help="the application as module:attribute, e.g. main:app")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--probe-path", default=DEFAULT_PATH, help="path the probe answers on")
    parser.add_argument("--ws", default="auto", help="uvicorn's WebSocket implementation")
    parser.add_argument("--app-dir", default=".", help="directory to import the application from")
    describe_flags(parser, {}, {})
    args = parser.parse_args(argv)
    os.environ[ENABLE_ENV] = "1"
    sys.path.insert(0, os.path.abspath(args.app_dir))

    import uvicorn
    from uvicorn.importer import ImportFromStringError, import_from_string

    try:
        app = import_from_string(args.app)
    except ImportFromStringError as error:
        print(f"wsguard leakcheck: cannot import the application: {error}", file=sys.stderr)
        return 2
    if not (isinstance(app, ProbeMiddleware) and app.path == args.probe_path):
        app = ProbeMiddleware(app, path=args.probe_path, enabled=True)
    uvicorn.run(app, host=args.host, port=args.port, ws=args.ws, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
