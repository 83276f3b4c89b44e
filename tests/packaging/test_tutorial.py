"""The tutorial (docs/tutorial.md) works as written: its ``app.py``, ``index.html`` and
``worker.py`` are saved as they stand and the app is served by ``uvicorn app:app``; two clients
of one user and one of another follow ``chat-1`` while the app runs the agent and the worker
publishes into the thread; in Chromium, two tabs of the page share one connection and show the
same events, and a tab of another user in the same browser has its own and sees none of them.
Nothing is held once they are gone."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import wsguard.client
from tests.chromium import MISSING, launch
from wsguard.processes import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
FILES = ("app.py", "index.html", "worker.py")
WORKER_URL = "http://127.0.0.1:8000"
"""Where the tutorial's worker publishes (uvicorn's default address); the test's server has a free
port instead, and only this is changed in the worker's text."""
AGENT_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
WORKER_EVENTS = ["agent_started", *["agent_delta"] * 7, "agent_completed"]
ALICE = {"Authorization": "Bearer token-alice"}


def tutorial_files() -> dict[str, str]:
    """The tutorial's code blocks that carry a file name (```python title="app.py"```)."""
    text = TUTORIAL.read_text(encoding="utf-8")
    blocks = dict(re.findall(r'^```\w+ title="([^"]+)"\n(.*?)^```$', text, flags=re.DOTALL | re.MULTILINE))
    assert set(blocks) == set(FILES), f"the tutorial's files are {sorted(blocks)}"
    return blocks


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    folder = tmp_path_factory.mktemp("tutorial")
    for name, text in tutorial_files().items():
        (folder / name).write_text(text, encoding="utf-8")
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(folder), "app:app"]
    with ServerProcess(command=command, dev=False) as server:
        worker = (folder / "worker.py").read_text(encoding="utf-8")
        assert worker.count(WORKER_URL) == 1
        (folder / "worker.py").write_text(worker.replace(WORKER_URL, server.base_url), encoding="utf-8")
        yield server, folder


def run_worker(folder: Path, user_id: str, thread_id: str) -> str:
    result = subprocess.run(
        [sys.executable, "worker.py", user_id, thread_id],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def take(client: wsguard.client.Client, count: int) -> list[wsguard.client.Event]:
    events: list[wsguard.client.Event] = []
    while len(events) < count:
        item = await asyncio.wait_for(anext(aiter(client)), timeout=10)
        assert isinstance(item, wsguard.client.Event), item
        events.append(item)
    return events


def test_the_app_streams_the_agent_and_the_worker_to_each_of_the_users_clients(
    app: tuple[ServerProcess, Path],
) -> None:
    server, folder = app
    page = server.http.get("/")
    assert page.status_code == 200
    assert 'import { connect } from "/client/wsguard.js";' in page.text
    refused = server.http.post("/chats/chat-1/ask")
    assert (refused.status_code, refused.json()) == (401, {"detail": "unknown token"})

    async def scenario() -> tuple[list[list[wsguard.client.Event]], str, str]:
        connect = wsguard.client.connect
        async with (
            connect(server.ws_url, token="token-alice") as tab1,
            connect(server.ws_url, token="token-alice") as tab2,
            connect(server.ws_url, token="token-bob") as bob,
        ):
            for client in (tab1, tab2, bob):
                await client.subscribe("chat-1")
            answer = await asyncio.to_thread(server.http.post, "/chats/chat-1/ask", headers=ALICE)
            run_id = answer.json()["run_id"]
            agent = [await take(tab, len(AGENT_EVENTS)) for tab in (tab1, tab2)]
            printed = await asyncio.to_thread(run_worker, folder, "alice", "chat-1")
            worker = [await take(tab, len(WORKER_EVENTS)) for tab in (tab1, tab2)]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(aiter(bob)), timeout=0.5)
            return [a + w for a, w in zip(agent, worker, strict=True)], run_id, printed

    (first, second), run_id, printed = asyncio.run(scenario())
    assert first == second
    assert [e.event for e in first] == AGENT_EVENTS + WORKER_EVENTS
    assert [e.offset for e in first] == list(range(1, len(first) + 1))
    assert {e.run_id for e in first[: len(AGENT_EVENTS)]} == {run_id}
    worker_run = first[-1].run_id
    assert printed.strip() == f"{worker_run}: offsets {len(AGENT_EVENTS) + 1} to {len(first)} of chat-1"
    assert " ".join(e.data["text"] for e in first if e.event == "agent_delta") == (
        "Here is the summary you asked for."
    )
    server.wait_idle(timeout=5.0)


@pytest.mark.skipif(MISSING is not None, reason=f"no browser ({MISSING}): apt-get install chromium")
def test_two_tabs_of_the_page_share_one_connection(app: tuple[ServerProcess, Path]) -> None:
    server, folder = app
    with launch() as chromium:
        context = chromium.new_context()
        tabs = [context.new_page() for _ in range(2)]
        for tab in tabs:
            tab.goto(f"{server.base_url}/?token=token-alice")
        for tab in tabs:
            tab.wait_for_function("document.getElementById('state').textContent === 'open'", timeout=10_000)
        roles = sorted(tab.inner_text("#role") for tab in tabs)
        assert roles == ["follower", "leader"]
        assert server.metrics()["wsguard_connections_active"] == 1
        bob = context.new_page()
        bob.goto(f"{server.base_url}/?token=token-bob")
        bob.wait_for_function("document.getElementById('state').textContent === 'open'", timeout=10_000)
        assert server.metrics()["wsguard_connections_active"] == 2
        before = tabs[0].locator("li").count()  # the thread's history
        tabs[1].click("#ask")
        run_worker(folder, "alice", "chat-1")
        expected = before + len(AGENT_EVENTS) + len(WORKER_EVENTS)
        for tab in tabs:
            tab.wait_for_function(f"document.querySelectorAll('li').length >= {expected}", timeout=15_000)
        offsets = [tab.eval_on_selector_all("li", "items => items.map((item) => item.value)") for tab in tabs]
        assert offsets == [list(range(1, expected + 1))] * 2, "each event once, in order, in both tabs"
        assert tabs[0].inner_text("#events") == tabs[1].inner_text("#events")
        assert bob.locator("li").count() == 0, "another user's tab in the same browser gets nothing"
        assert bob.inner_text("#role") == "leader"
        context.close()
    server.wait_idle(timeout=5.0)
