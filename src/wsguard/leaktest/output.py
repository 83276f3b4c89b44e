"""What a ``wsguard leakcheck`` run leaves behind: its exit status and its report files.

Both modes of the command (wsguard's own scenarios, and the generic ones against any ASGI app)
end the same way, so this sits below both of their command lines.
"""

from __future__ import annotations

import json
from pathlib import Path

from wsguard.leaktest.report import render_html, to_json
from wsguard.leaktest.results import RunReport

EXIT_OK, EXIT_LEAK, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def write_reports(report: RunReport, directory: Path) -> tuple[Path, Path]:
    """Write ``leakcheck.json`` and ``leakcheck.html``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "leakcheck.json"
    html_path = directory / "leakcheck.html"
    json_path.write_text(json.dumps(to_json(report), indent=2), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path
