"""The last ``wsguard leakcheck`` report written to the configured directory, for the dashboard."""

import json
from pathlib import Path
from typing import Any

JSON_NAME = "leakcheck.json"
HTML_NAME = "leakcheck.html"


def report_summary(directory: str | None) -> dict[str, Any] | None:
    """Verdicts of the last run (None without a directory or a readable report)."""
    if not directory:
        return None
    path = Path(directory) / JSON_NAME
    try:
        body = json.loads(path.read_text())
        modified_at = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("scenarios"), list):
        return None
    return {
        "modified_at": modified_at,
        "started_at": body.get("started_at"),
        "profile": body.get("profile"),
        "target": body.get("target"),
        "passed": bool(body.get("passed")),
        "duration_s": body.get("duration_s"),
        "scenarios": [
            {"name": s.get("name"), "verdict": s.get("verdict"), "reasons": s.get("reasons", [])}
            for s in body["scenarios"]
            if isinstance(s, dict)
        ],
        "html": (Path(directory) / HTML_NAME).is_file(),
    }


def report_html(directory: str | None) -> Path | None:
    if not directory:
        return None
    path = Path(directory) / HTML_NAME
    return path if path.is_file() else None
