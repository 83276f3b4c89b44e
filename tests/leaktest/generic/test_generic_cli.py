"""``wsguard leakcheck --target --probe`` against an app someone else started, its reports, its
usage errors, and the pytest fixture that serves an app by import string."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.leaktest.generic.support import APPS, ROOT, SMALL, WS_PATH
from wsguard.leaktest.generic.asgi_app import serve_asgi_app
from wsguard.leaktest.pytest_plugin import LeakCheckAsgi, LeakCheckFailed
from wsguard.probe import DEFAULT_PATH, app_count_key


def leakcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsguard", "leakcheck", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_names_the_leaked_count_in_the_table_and_both_reports(tmp_path: Path) -> None:
    with serve_asgi_app(f"{APPS}.user_dict:leaky", app_dir=ROOT) as server:
        ran = leakcheck(
            "--target", f"ws://{server.host}:{server.port}/ws/{{identity}}",
            "--probe", server.base_url + DEFAULT_PATH,
            "--check", "same_identity",
            "--identity", "user-{n}",
            "--header", "X-User: {identity}",
            "--send", '{"join": "{identity}"}',
            "--report-dir", str(tmp_path),
        )  # fmt: skip
    evidence = app_count_key("sockets")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert evidence in ran.stdout
    report = json.loads((tmp_path / "leakcheck.json").read_text())
    (scenario,) = report["scenarios"]
    assert scenario["name"] == "same_identity"
    assert scenario["verdict"] == "leak"
    (leak,) = scenario["rounds"][-1]["leaks"]
    assert leak["name"] == evidence
    assert leak["value"] > leak["baseline"] == 0
    html = (tmp_path / "leakcheck.html").read_text()
    assert evidence.replace('"', "&quot;") in html
    assert "<svg" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--probe", "http://127.0.0.1:9/p"], "--probe needs --target"),
        (["--target", "ws://h/ws", "--check", "churn"], "need --probe"),
        (["--probe", "http://127.0.0.1:9/p", "--target", "http://h/ws"], "ws:// or wss://"),
        (["--probe", "http://127.0.0.1:9/p", "--target", "ws://h/ws", "--header", "X"], "Name: value"),
        (["--probe", "http://127.0.0.1:9/p", "--target", "ws://h/ws", "--cluster", "2"], "--cluster"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    ran = leakcheck(*args)
    assert ran.returncode == 2
    assert message in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


def test_pytest_fixture_passes_a_fixed_app_and_fails_a_leaky_one(leakcheck_asgi: LeakCheckAsgi) -> None:
    options = {"scenarios": ["connect_close"], "sizes": SMALL, "app_dir": ROOT}
    report = leakcheck_asgi(f"{APPS}.background_task:fixed", WS_PATH, **options)
    assert report.passed
    with pytest.raises(LeakCheckFailed, match="wsguard_probe_asyncio_tasks = "):
        leakcheck_asgi(f"{APPS}.background_task:leaky", WS_PATH, **options)
