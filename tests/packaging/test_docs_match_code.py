"""Claims in docs/ that the code decides: each checked against the code."""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
from pathlib import Path

from starlette.routing import Mount, Route

from tests.leaktest.broken_servers import BUGS
from tests.packaging.test_docs_code_blocks import protocol_endpoints
from wsguard import WSGuard
from wsguard.backends.redis.decisions import RenewalSchedule
from wsguard.leaktest.cli import apply_environment, configure_parser
from wsguard.leaktest.profiles import default_profile_name
from wsguard.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HARNESS = (ROOT / "docs" / "leakcheck.md").read_text(encoding="utf-8")
"""Run the leak harness: the scenarios, the broken servers, the pytest plugin."""
NUMBERS = {5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _python_block_with(marker: str) -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", HARNESS, flags=re.DOTALL)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"expected one python block with {marker!r} in leakcheck.md, found {len(found)}"
    return found[0]


def test_pytest_plugin_example_imports_every_name_it_uses(tmp_path: Path) -> None:
    example = tmp_path / "test_example.py"
    example.write_text(_python_block_with("def test_my_app_does_not_leak"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F821,F401", str(example)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_harness_guide_names_every_broken_server_and_their_number() -> None:
    section = HARNESS.partition("The harness proves it can fail")[2].partition("\n## ")[0]
    assert section, "docs/leakcheck.md: no paragraph on the broken servers"
    assert set(re.findall(r"`([a-z_]+)`", section)) == set(BUGS)
    assert f"one of {NUMBERS[len(BUGS)]} bugs" in section


def test_the_harness_guide_states_leakcheck_default_profile_and_report_dir() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    defaults = parser.parse_args([])
    apply_environment(defaults, {})
    assert f"`{defaults.report_dir}/`" in HARNESS
    lines = HARNESS.splitlines()
    default_line = next(line for line in lines if line.strip().startswith("wsguard leakcheck  "))
    assert default_line.rstrip().endswith(f"else {default_profile_name({})}")


def test_deploy_guide_points_at_the_redis_backend_it_has() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = deploy.partition("## Several instances")[2]
    assert "when available" not in section
    assert "[redis.md](redis.md)" in section
    assert "wsguard[redis]" in section


def test_scaling_model_uses_the_defaults_it_names() -> None:
    """The sizing model's renewal period, heartbeat and retention are the code's defaults."""
    scaling = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    settings = Settings()
    period = RenewalSchedule(settings.lease_ttl).interval
    assert f"every `--lease-ttl / 3` = {period:g} s by default" in scaling
    assert f"one script per user held per instance every {period:g} s" in scaling
    assert f"a ping every {settings.heartbeat_interval:g} s per connection" in scaling
    events, seconds = settings.retention_events, settings.retention_seconds
    assert f"`--retention-events {events}`, `--retention-seconds {seconds:g}`" in scaling


def test_every_http_route_is_in_protocol_md_section_4() -> None:
    """Each route ``wsguard serve --dev`` answers is in docs/protocol.md section 4's table (CORS
    preflights, section 9, aside), the browser client's files, the demo page and the dashboard's
    static files too."""
    endpoints = protocol_endpoints()
    served: list[tuple[str, set[str]]] = []
    for route in WSGuard(Settings(dev=True)).routes():
        if isinstance(route, Route):
            served.append((route.path, set(route.methods or ())))
        elif isinstance(route, Mount):  # static files: one name under the mount
            served.append((f"{route.path}/{{name}}", {"GET"}))
    assert len(served) > 20
    missing = []
    for template, methods in served:
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            if not any(e.method == method and e.pattern.fullmatch(path) for e in endpoints):
                missing.append(f"{method} {template}")
    assert missing == [], "not in docs/protocol.md section 4"


def test_the_exit_statuses_of_serve_are_the_documented_ones() -> None:
    """docs/reference/cli.md's table of ``wsguard serve``'s exit statuses: a bad value is 2, an
    address in use is 3 (uvicorn's start-up failure, after the app's startup and shutdown)."""
    reference = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    section = reference.partition("## `wsguard serve`")[2].partition("\n## ")[0]
    assert re.findall(r"^\| (\d) \|", section, flags=re.MULTILINE) == ["0", "1", "2", "3"]
    serve = [sys.executable, "-m", "wsguard", "serve", "--dev", "--host", "127.0.0.1"]
    bad = subprocess.run([*serve, "--port", "70000"], capture_output=True, text=True, timeout=60, check=False)
    assert (bad.returncode, bad.stderr.count("\n")) == (2, 1), bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = subprocess.run(
            [*serve, "--port", port], capture_output=True, text=True, timeout=60, check=False
        )
    assert busy.returncode == 3, busy.stderr[-2000:]
    assert "address already in use" in busy.stderr
