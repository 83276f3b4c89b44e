"""``--max-connections`` holds exactly when many upgrades are admitted at once, even while each
admission awaits the Redis backend."""

import asyncio

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.redis.conftest import StartInstance
from wsguard.processes.clients import receive

CAP = 5
ATTEMPTS = 40


def test_concurrent_admissions_never_pass_max_connections(start_instance: StartInstance) -> None:
    instance = start_instance("--max-connections", str(CAP))
    tokens = [instance.token(f"user-{n}") for n in range(ATTEMPTS)]

    async def attempt(token: str) -> tuple[str, ClientConnection | None]:
        try:
            socket = await connect(instance.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
        except InvalidStatus as refused:
            return f"http {refused.response.status_code}", None
        try:
            return str((await receive(socket, timeout=10))["type"]), socket
        except ConnectionClosed:
            return f"closed {socket.close_code}", None

    async def scenario() -> list[str]:
        results = await asyncio.gather(*(attempt(token) for token in tokens))
        peak = instance.metrics()["wsguard_connections_active"]
        await asyncio.gather(*(socket.close() for _, socket in results if socket is not None))
        assert peak <= CAP
        return [outcome for outcome, _ in results]

    outcomes = asyncio.run(scenario())
    assert outcomes.count("welcome") == CAP, outcomes
    assert outcomes.count("http 503") == ATTEMPTS - CAP, outcomes
