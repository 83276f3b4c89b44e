"""Release basics: one version everywhere (pyproject, the installed metadata, the CLI, the browser
client), the license and changelog a release carries, and package data that covers every file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path, PurePosixPath
from typing import Any

import wsguard
from tests.packaging.test_optional_dependencies import SERVER_MODULES, run_python

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "wsguard"
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT: dict[str, Any] = PYPROJECT["project"]
VERSION: str = PROJECT["version"]
STALE = "the installed metadata is not pyproject.toml's: reinstall (make install, or pip install -e .)"


def test_installed_metadata_is_pyprojects_version() -> None:
    assert installed_version("wsguard") == VERSION, STALE


def test_package_version_is_the_metadatas() -> None:
    assert wsguard.__version__ == installed_version("wsguard") == VERSION, STALE
    assert "__version__" in dir(wsguard)


def test_cli_prints_its_version() -> None:
    """The real command, in a process of its own, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "wsguard", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wsguard {VERSION}\n", STALE


def test_version_is_read_without_loading_the_server() -> None:
    """``wsguard.__version__`` keeps the package's exports lazy: with it, ``import wsguard.client``
    still loads no server module (what ``.ci/package-check`` asserts of the wheel)."""
    code = (
        "import sys, wsguard\n"
        "version = wsguard.__version__\n"
        "import wsguard.client\n"
        f"print(version, sorted(set({SERVER_MODULES!r}) & set(sys.modules)))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{VERSION} []"


def test_browser_client_has_the_python_packages_version() -> None:
    browser = PACKAGE / "browser"
    package = json.loads((browser / "package.json").read_text(encoding="utf-8"))
    assert package["version"] == VERSION
    assert package["license"] == PROJECT["license"]
    constants = [
        (path.name, found)
        for path in sorted(browser.glob("*.js"))
        for found in re.findall(r"\bVERSION\s*=\s*[\"']([^\"']+)[\"']", path.read_text(encoding="utf-8"))
    ]
    assert all(found == VERSION for _, found in constants), constants


def test_changelog_has_unreleased_and_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, flags=re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    newest, date = headings[1]
    assert newest == VERSION
    assert date, "the newest release's heading is dated"
    for name, _ in headings:
        assert re.search(rf"^\[{re.escape(name)}\]: https://", changelog, flags=re.MULTILINE), name


def test_license_is_mit_by_spdx_expression_only() -> None:
    """PEP 639: the SPDX expression and the license file; a license classifier beside them is an
    error to setuptools, which needs 77 or newer to read them."""
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the wsguard authors" in license_text
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]
    backend = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert [int(r.partition(">=")[2].split(".")[0] or 0) >= 77 for r in backend] == [True]


def test_classifiers_name_the_supported_python_only() -> None:
    versions = [
        c for c in PROJECT["classifiers"] if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert PROJECT["requires-python"] == ">=3.11"
    assert versions == ["Programming Language :: Python :: 3.11"]


def _packaged(relative: PurePosixPath, patterns: list[str]) -> bool:
    """Whether a setuptools package-data glob (``*`` within one folder) names ``relative``."""
    return any(
        len(relative.parts) == len(PurePosixPath(pattern).parts) and relative.match(pattern)
        for pattern in patterns
    )


def test_package_data_covers_every_file_the_package_serves() -> None:
    """The wheel (and a wheel built from the sdist) carries every non-Python file under
    src/wsguard but the browser client's Node tests."""
    patterns: list[str] = PYPROJECT["tool"]["setuptools"]["package-data"]["wsguard"]
    files = [
        PurePosixPath(path.relative_to(PACKAGE).as_posix())
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]
    served = [path for path in files if path.parts[:2] != ("browser", "test")]
    assert PurePosixPath("browser/wsguard.js") in served
    assert PurePosixPath("server/static/admin/index.html") in served
    assert [str(path) for path in served if not _packaged(path, patterns)] == []
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    assert "include CHANGELOG.md" in manifest
