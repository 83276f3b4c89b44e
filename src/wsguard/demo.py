"""``make demo``: a server on the embedded default, two users with a few tabs each, a streamed run.

It prints what every tab received and the server's counts once every tab has closed, and exits
non-zero if a tab missed an event, got another user's, or anything was left behind.
"""

import asyncio
import sys

from websockets.asyncio.client import ClientConnection

from wsguard.processes import IDLE_COUNTS, ServerProcess
from wsguard.processes.clients import drop, open_socket, receive, send

USERS = {"alice": 3, "bob": 2}
THREAD = "chat-1"


async def _tab_events(tab: ClientConnection, run_id: str) -> list[str]:
    """The tab's events of the run as ``offset:name``; an event of another run is marked."""
    names: list[str] = []
    while not names or not names[-1].endswith(":agent_completed"):
        frame = await receive(tab, timeout=10)
        if frame["type"] == "event":
            mark = "" if frame["run_id"] == run_id else "!FOREIGN!"
            names.append(f"{mark}{frame['offset']}:{frame['event']}")
    return names


async def _stream(server: ServerProcess) -> bool:
    tabs: dict[str, list[ClientConnection]] = {}
    for user, count in USERS.items():
        token = server.token(user)
        tabs[user] = [(await open_socket(server.ws_url, token))[0] for _ in range(count)]
        for tab in tabs[user]:
            await send(tab, type="subscribe", thread_id=THREAD)
            await receive(tab)
    runs = {}
    for user in USERS:
        response = server.http.post(
            f"/api/threads/{THREAD}/runs", json={"text": f"hello from {user}"}, headers=server.auth(user)
        )
        runs[user] = response.json()
    ok = True
    for user, user_tabs in tabs.items():
        run_id = runs[user]["run_id"]
        received = await asyncio.gather(*(_tab_events(tab, run_id) for tab in user_tabs))
        print(f"\n{user}: run {runs[user]['run_id']} on thread {THREAD}")
        for number, names in enumerate(received, 1):
            print(f"  tab {number}: {' '.join(names)}")
        ok = ok and all(names == received[0] for names in received)
        ok = ok and not any("!FOREIGN!" in name for names in received for name in names)
    for user_tabs in tabs.values():
        for number, tab in enumerate(user_tabs):
            if number % 2:
                drop(tab)
            else:
                await tab.close()
    return ok


def main() -> int:
    print("wsguard demo: starting a server on the embedded default (memory backend)")
    with ServerProcess("--demo-step-delay", "0.02") as server:
        print(f"listening on {server.ws_url}")
        same_everywhere = asyncio.run(_stream(server))
        metrics = server.wait_idle(timeout=2.0)
        print("\nafter every tab closed (half with a close frame, half by dropping TCP):")
        for name in (*IDLE_COUNTS, "wsguard_connections_opened_total", "wsguard_sweeper_repairs_total"):
            print(f"  {name} = {metrics[name]:g}")
    if not same_everywhere:
        print("FAILED: the tabs of one user did not all receive the same events", file=sys.stderr)
        return 1
    print("\nok: every tab got every event of its own user once, and nothing was left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
