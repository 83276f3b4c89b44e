"""The command line of a server script that :class:`~wsguard.processes.ServerProcess` starts in
place of ``wsguard serve`` (``command=[...]``): the ``--host``, ``--port`` and ``--dev`` it passes."""

import argparse
from typing import Any

from wsguard.settings import Settings


def script_parser() -> argparse.ArgumentParser:
    """A parser of the flags :class:`~wsguard.processes.ServerProcess` passes; add the script's own."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dev", action="store_true")
    return parser


def script_settings(**fields: Any) -> Settings:
    """The settings of a script that takes only those flags, with ``fields`` on top."""
    args = script_parser().parse_args()
    return Settings(host=args.host, port=args.port, dev=args.dev, **fields)
