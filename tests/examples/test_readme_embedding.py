"""The README's FastAPI example runs as written: its code block is saved as ``app.py`` and served
by ``uvicorn app:app``, then used over a real socket and a real event stream."""

import asyncio
import json
import re
import sys
from pathlib import Path

from websockets.asyncio.client import connect

from wsguard.processes import ServerProcess
from wsguard.processes.clients import receive
from wsguard.processes.streams import StreamClient

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Example: in a FastAPI app"


def readme_app() -> str:
    section = README.read_text(encoding="utf-8").split(SECTION, 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None, f"no python block under {SECTION!r}"
    return block.group(1)


def test_the_readme_fastapi_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(readme_app(), encoding="utf-8")
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "app:app"]
    with ServerProcess(command=command, dev=False, ready_path="/client/wsguard.js") as server:
        key = {"X-API-Key": "key-alice"}

        async def scenario() -> None:
            async with connect(server.ws_url, additional_headers=key) as socket:
                welcome = await receive(socket)
                assert welcome["user_id"] == "alice"
                await socket.send(json.dumps({"type": "subscribe", "thread_id": "chat-1"}))
                assert (await receive(socket))["type"] == "subscribed"
                stream = await StreamClient.open(server.base_url, subscribe=["chat-1"], headers=key)
                try:
                    assert (await stream.receive())["type"] == "subscribed"
                    done = server.http.post("/chats/chat-1/tool-done", params={"user_id": "alice"})
                    assert done.json() == {"offset": 1}
                    event = await receive(socket)
                    assert (event["event"], event["data"]) == ("tool_completed", {"tool": "search"})
                    assert await stream.receive() == event
                finally:
                    await stream.close()

        asyncio.run(scenario())
        assert server.http.get("/metrics").status_code == 404, "api=False mounts no HTTP API"
        refused = server.http.get("/sse", headers={"X-API-Key": "wrong"})
        assert refused.status_code == 401
