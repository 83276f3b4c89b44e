"""What a ``wsguard leakcheck`` run leaves behind: its exit status, its report files and the log
of the servers it started.

Both modes of the command (wsguard's own scenarios, and the generic ones against any ASGI app)
end the same way, so this sits below both of their command lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wsguard.leaktest.report import render_html, to_json
from wsguard.leaktest.results import RunReport

EXIT_OK, EXIT_LEAK, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
SERVER_LOG = "server.log"
TAIL_LINES = 20
TAIL_BYTES = 64 * 1024
"""How much of the log's end is read for its last lines: a long run's log may be large."""


def write_reports(report: RunReport, directory: Path, server_log: Path | None = None) -> tuple[Path, Path]:
    """Write ``leakcheck.json`` and ``leakcheck.html``, which name ``server_log`` relative to
    them; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "leakcheck.json"
    html_path = directory / "leakcheck.html"
    log = None if server_log is None else Path(os.path.relpath(server_log, directory)).as_posix()
    json_path.write_text(json.dumps(to_json(report, log), indent=2), encoding="utf-8")
    html_path.write_text(render_html(report, log), encoding="utf-8")
    return json_path, html_path


def new_server_log(directory: Path) -> Path:
    """An empty ``server.log`` in ``directory``: the servers a run starts write their output there,
    so that it does not come between the harness's own lines."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SERVER_LOG
    path.write_bytes(b"")
    return path


def log_ending(path: Path, lines: int = TAIL_LINES) -> str:
    """The log's path and its last ``lines`` lines, for a run whose server failed or died."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - TAIL_BYTES))
            text = log.read().decode("utf-8", errors="replace")
    except OSError as error:
        return f"the servers' output is in {path}, which cannot be read: {error}"
    last = text.splitlines()[1 if size > TAIL_BYTES else 0 :][-lines:]
    if not last:
        return f"the servers' output, {path}, is empty"
    return f"the servers' output, {path}, ends with:\n" + "\n".join(f"    {line}" for line in last)
