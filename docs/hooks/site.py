"""MkDocs hooks of the documentation site (mkdocs.yml's ``hooks``).

- A line ``<!-- wsguard-help: serve -->`` in a page becomes the text that ``wsguard serve --help``
  prints, taken from the parser itself at build time (``<!-- wsguard-help: -->`` for
  ``wsguard --help``), so the command-line reference cannot drift from the code.
- A link to a file of the repository outside docs/ (``../examples/worker.py``, which works when
  the page is read in the repository) points to that file on the project's source host instead
  (mkdocs.yml's ``extra.source_url``). A link to a file that does not exist is a warning, which
  ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.wsguard")

ROOT = Path(__file__).resolve().parents[2]
HELP_MARKER = re.compile(r"^<!-- wsguard-help:(?P<args>[^>]*)-->$", re.MULTILINE)
HELP_COLUMNS = "82"
LINK = re.compile(r"(?P<open>\]\()(?P<target>[^)\s#]+)(?P<rest>[^)]*\))")
FENCE = re.compile(r"^(```|~~~)")


def help_text(args: list[str]) -> str:
    """What ``wsguard ARGS --help`` prints, at a fixed width."""
    from wsguard import cli

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            cli.main([*args, "--help"])
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    text = out.getvalue().rstrip()
    if not text.startswith("usage: wsguard"):
        raise RuntimeError(f"wsguard {' '.join(args)} --help printed no usage: {text[:200]!r}")
    return text


def _insert_help(markdown: str) -> str:
    def replace(match: re.Match[str]) -> str:
        args = match["args"].split()
        command = " ".join(["wsguard", *args, "--help"])
        return f"```console\n$ {command}\n{help_text(args)}\n```"

    return HELP_MARKER.sub(replace, markdown)


def _outside_links(markdown: str, src_uri: str, source_url: str) -> str:
    """Links from the page at ``src_uri`` (relative to docs/) that leave docs/, pointed at the
    source host; code blocks are left alone."""
    page_dir = posixpath.dirname(f"docs/{src_uri}")

    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match[0]
        path = posixpath.normpath(posixpath.join(page_dir, target))
        if path.startswith("docs/") or path.startswith("../"):
            return match[0]
        if not (ROOT / path).exists():
            log.warning("Doc file '%s' links to '%s', which is not in the repository", src_uri, target)
            return match[0]
        url = source_url + path
        if (ROOT / path).is_dir():
            url = url.replace("/blob/", "/tree/", 1)
        return f"{match['open']}{url}{match['rest']}"

    lines, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        lines.append(line if fenced else LINK.sub(replace, line))
    return "\n".join(lines)


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    source_url = config["extra"]["source_url"]
    markdown = _insert_help(markdown)
    return _outside_links(markdown, page.file.src_uri, source_url)
