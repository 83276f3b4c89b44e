"""What ``wsguard serve`` logs: its start-up lines, an unreachable backend, and JSON without secrets."""

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import httpx
import pytest
from websockets.sync.client import connect

from wsguard.processes import ServerProcess
from wsguard.processes.process import end_process, free_port
from wsguard.processes.redis_server import RedisServer, redis_server_binary

JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.")


class LogReader:
    """A ``wsguard serve`` process whose stderr lines are collected by a thread as they come."""

    def __init__(self, *flags: str, command: Sequence[str] = (sys.executable, "-m", "wsguard")) -> None:
        """``command`` runs the CLI: its arguments follow (``serve``, the address, ``flags``)."""
        argv = [*command, "serve", "--host", "127.0.0.1", "--port", "0", *flags]
        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._incoming: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._incoming.put(line.rstrip("\n"))
        self._incoming.put(None)

    def until(self, found: Callable[[str], bool], timeout: float) -> str:
        """Collect lines until one satisfies ``found``; fail with every line seen."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._incoming.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if found(line):
                return line
        seen = "\n".join(self.lines)
        raise AssertionError(f"not logged within {timeout:g}s; lines:\n{seen}")

    def stop(self) -> list[str]:
        """Stop the server; every line it logged."""
        end_process(self.process, timeout=20)
        self._reader.join(5)
        while not self._incoming.empty():
            line = self._incoming.get()
            if line is not None:
                self.lines.append(line)
        return self.lines


@pytest.fixture
def serve() -> Iterator[Callable[..., LogReader]]:
    started: list[LogReader] = []

    def start(*flags: str) -> LogReader:
        started.append(LogReader(*flags))
        return started[-1]

    yield start
    for reader in started:
        reader.stop()


def test_serve_dev_says_what_runs_where_and_warns_about_dev(serve: Callable[..., LogReader]) -> None:
    reader = serve("--dev")
    listening = reader.until(lambda line: "listening on" in line, timeout=30)
    head = "\n".join(reader.lines)
    port = re.search(r"http://127\.0\.0\.1:(\d+) and ws://127\.0\.0\.1:(\d+)", listening)
    assert port is not None, listening
    assert port.group(1) == port.group(2), listening
    assert int(port.group(1)) > 0, listening
    assert re.search(r"INFO:.*wsguard \d+\.\d+\.\d+\S* starting .*WebSocket at /ws", head), head
    assert "limits: 20 connections per user (evict_oldest)" in head, head
    assert "heartbeat every 20s (timeout 20s)" in head, head
    assert re.search(r"WARNING:.*--dev is on: .*/api/dev/tokens.*every origin is allowed", head), head
    assert "backend: memory" in head, head
    assert len(reader.lines) <= 10, head
    response = httpx.get(f"http://127.0.0.1:{port.group(1)}/healthz", timeout=5)
    assert response.text == "ok"


def _at(line: str) -> float:
    return datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")).timestamp()


def test_unreachable_redis_is_a_warning_within_two_seconds_then_each_change_once(
    serve: Callable[..., LogReader],
) -> None:
    port = free_port()
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    reader = serve("--dev", "--log-format", "json", "--backend", url)
    starting = reader.until(lambda line: "starting" in line, timeout=30)
    warning = reader.until(lambda line: "unreachable" in line, timeout=10)
    record = json.loads(warning)
    assert record["level"] == "warning", warning
    assert f"redis://:***@127.0.0.1:{port}/0" in record["message"], warning
    assert "local limit" in record["message"], warning
    assert _at(warning) - _at(starting) < 2.0, (starting, warning)
    reader.until(lambda line: "listening on" in line, timeout=10)
    if redis_server_binary() is None:
        pytest.skip("no redis-server to bring the backend up")
    with RedisServer(port=port) as redis:
        reader.until(lambda line: "redis backend up" in line, timeout=15)
        redis.kill()
        reader.until(lambda line: "redis backend down" in line, timeout=15)
    time.sleep(1.5)  # the listener retries (backoff capped at 1 s): no further down line may appear
    every = reader.stop()
    assert sum("redis backend up" in line for line in every) == 1, every
    assert sum("redis backend down" in line for line in every) == 1, every
    assert not any("hunter2-secret" in line for line in every), every


def test_json_lines_parse_carry_ids_and_hold_no_token_during_a_leak_harness_run(tmp_path: Path) -> None:
    """Also: the harness's report, written where the server is told to look, reaches its dashboard."""
    log_path = tmp_path / "server.log"
    reports = tmp_path / "report"
    flags = ("--log-format", "json", "--log-level", "debug", "--demo-step-delay", "0.005",
             "--leakcheck-report-dir", str(reports))  # fmt: skip
    with ServerProcess(*flags, log_path=log_path) as server:
        token = server.token("log-user")
        ticket = server.http.post("/api/tickets", headers={"Authorization": f"Bearer {token}"}).json()
        with connect(f"{server.ws_url}?ticket={ticket['ticket']}") as ws:
            json.loads(ws.recv())
            run = server.http.post(
                "/api/threads/logged/runs", json={"text": "hi"}, headers={"Authorization": f"Bearer {token}"}
            ).json()
        harness = subprocess.run(
            [
                sys.executable, "-m", "wsguard", "leakcheck", "--target", server.ws_url,
                "--profile", "ci", "--scenario", "multi_tab",
                "--churn-cycles", "0", "--quiet", "--report-dir", str(reports),
            ],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert harness.returncode == 0, harness.stdout + harness.stderr
        admin = server.auth("log-admin", admin=True)
        summary = server.http.get("/api/admin/leakcheck", headers=admin).json()
        assert summary["passed"] is True, summary
        assert [(s["name"], s["verdict"]) for s in summary["scenarios"]] == [("multi_tab", "pass")]
        page = server.http.get("/api/admin/leakcheck.html", headers=admin)
        assert page.headers["content-type"].startswith("text/html")
        assert page.content == (reports / "leakcheck.html").read_bytes()
        refused = server.http.get("/api/admin/leakcheck.html", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403
    lines = log_path.read_text().splitlines()
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    assert not [line for line in lines if JWT.search(line) or token in line or ticket["ticket"] in line]
    with_connection = [r for r in records if {"connection_id", "user_id", "session_id"} <= r.keys()]
    assert any(r["user_id"] == "log-user" for r in with_connection), lines[:40]
    assert any(r.get("request_id") == run["request_id"] for r in records), lines[:40]
    assert any(r["level"] == "warning" and "--dev is on" in r["message"] for r in records)
