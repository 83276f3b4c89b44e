"""The documentation site builds as ``make docs`` builds it: ``mkdocs build --strict`` (mkdocs.yml),
into a temporary directory, so a broken link or anchor, a Python API reference that cannot be
collected or a docstring it cannot read fails ``make test`` too. The built pages are then checked
for what the hooks generate, and for anything a reader's browser would fetch from another host."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wsguard.cli import SERVE_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
MKDOCS_MISSING = any(importlib.util.find_spec(name) is None for name in ("mkdocs", "mkdocstrings"))
HOW_TO_ENABLE = "to build it: pip install -e '.[docs]' (make install installs it from the lock)"
WSGUARD_NAMES = [
    "WSGuard",
    "Settings",
    "CommandHooks",
    "Hub",
    "Identity",
    "Unauthorized",
    "EventTooLarge",
    "LimitPolicy",
    "ConnectionContext",
    "RunContext",
    "create_app",
]
FETCHED = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"')
"""A page resource (script, stylesheet, font, image, frame) from another host."""

pytestmark = pytest.mark.skipif(MKDOCS_MISSING, reason=f"mkdocs is not installed; {HOW_TO_ENABLE}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, result.stderr[-3000:]
    assert not problems, "\n".join(problems)
    return out


def page(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text(encoding="utf-8")


def text(site: Path, path: str) -> str:
    """A page's text, as a reader sees it (no tags, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page(site, path)))


def test_every_page_of_the_navigation_is_built(site: Path) -> None:
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert len(nav) >= 20
    for source in nav:
        built = source.removesuffix(".md").removesuffix("index")
        assert (site / built / "index.html").is_file(), f"{source} was not built"


def test_the_python_reference_documents_every_public_name(site: Path) -> None:
    reference = page(site, "reference/python/wsguard")
    for name in WSGUARD_NAMES:
        assert f'id="wsguard.{name}"' in reference, f"wsguard.{name} is not in the API reference"
    assert 'id="wsguard.Settings.max_connections_per_user"' in reference
    assert 'id="wsguard.CommandHooks.verify_refresh"' in reference, "the hooks' fields are documented"
    assert "<code>--max-connections-per-user</code>" in reference, "Settings' fields carry their flags"
    for module, name in [
        ("client", "Client"),
        ("publisher", "Publisher"),
        ("backends", "Published"),
        ("backends", "BackendUnavailable"),
        ("errors", "WSGuardError"),
        ("leaktest", "run_leakcheck"),
        ("processes", "ServerProcess"),
        ("probe", "ProbeMiddleware"),
    ]:
        assert f'id="wsguard.{module}.{name}"' in page(site, f"reference/python/{module}")
    assert 'id="wsguard.leaktest.generic.run_generic"' in page(site, "reference/python/leaktest")
    assert ":class:`" not in reference, "Sphinx roles are turned into references"


def test_the_command_line_reference_is_the_parsers_help(site: Path) -> None:
    shown = text(site, "reference/cli")
    assert "wsguard-help" not in shown
    for command in ("wsguard --help", "wsguard serve --help", "wsguard leakcheck --help"):
        assert f"$ {command}\nusage: {command.removesuffix(' --help')} [-h]" in shown
    for option in SERVE_OPTIONS:
        assert option.flag in shown, option.flag
        assert option.variable in shown, option.variable


def test_the_browser_reference_holds_the_type_declarations(site: Path) -> None:
    declarations = (ROOT / "src" / "wsguard" / "browser" / "wsguard.d.ts").read_text(encoding="utf-8")
    shown = text(site, "reference/browser-client")
    for line in declarations.splitlines():
        if line.startswith("export "):
            assert line in shown, line


def test_no_page_fetches_anything_from_another_host(site: Path) -> None:
    for built in site.rglob("*.html"):
        found = FETCHED.findall(built.read_text(encoding="utf-8"))
        assert not found, f"{built.relative_to(site)} loads {found}"
    for css in site.rglob("*.css"):
        assert "@import url(" not in css.read_text(encoding="utf-8"), f"{css.name} imports a stylesheet"


def test_links_to_files_outside_docs_point_to_the_repository(site: Path) -> None:
    tutorial = page(site, "tutorial")
    assert 'href="https://github.com/wsguard/wsguard/blob/main/examples/fastapi_app.py"' in tutorial
    assert 'href="../examples/' not in tutorial
