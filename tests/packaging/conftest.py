"""Where the documentation tools are missing, the run ends with one line saying how to get them."""

from typing import Any

from tests.packaging.test_docs_site import HOW_TO_ENABLE, MKDOCS_MISSING


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MKDOCS_MISSING:
        terminalreporter.write_line(f"documentation site skipped: mkdocs is not installed; {HOW_TO_ENABLE}")
