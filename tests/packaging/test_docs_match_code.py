"""Claims in README.md and docs/ that the code decides: each checked against the code."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from tests.leaktest.broken_servers import BUGS
from wsguard.backends.redis.decisions import RenewalSchedule
from wsguard.leaktest.cli import configure_parser
from wsguard.leaktest.profiles import default_profile_name
from wsguard.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NUMBERS = {5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _python_block_with(marker: str) -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"expected one README python block with {marker!r}, found {len(found)}"
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


def test_readme_names_every_broken_server_and_their_number() -> None:
    section = README.partition("The harness proves it can fail")[2].partition("From an application")[0]
    assert set(re.findall(r"`([a-z_]+)`", section)) == set(BUGS)
    assert f"one of {NUMBERS[len(BUGS)]} bugs" in section


def test_readme_states_leakcheck_default_profile_and_report_dir() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    defaults = parser.parse_args([])
    assert f"`{defaults.report_dir}/`" in README
    lines = README.splitlines()
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
