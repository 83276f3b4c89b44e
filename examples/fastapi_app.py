"""An existing FastAPI app that embeds wsguard (docs/protocol.md section 8).

The app keeps its own authentication (an API key per user here), decides who may subscribe to
which thread, handles a command type of its own, and publishes from an ordinary HTTP route,
in-process, with ``await hub.publish(...)``.

Run it: ``uvicorn examples.fastapi_app:app`` (or ``python examples/fastapi_app.py --port 8000``).
"""

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.requests import HTTPConnection

from wsguard import CommandHooks, ConnectionContext, Identity, Settings, Unauthorized, WSGuard
from wsguard.server.run import run_server

API_KEYS = {"key-alice": "alice", "key-bob": "bob", "key-ops": "ops"}
ADMINS = {"ops"}


async def authenticate(connection: HTTPConnection) -> Identity:
    """The app's own auth: an ``X-API-Key`` header (or ``api_key`` query parameter)."""
    key = connection.headers.get("x-api-key") or connection.query_params.get("api_key", "")
    user_id = API_KEYS.get(key)
    if user_id is None:
        raise Unauthorized("unknown API key")
    return Identity(user_id, admin=user_id in ADMINS)


async def may_subscribe(context: ConnectionContext, thread_id: str) -> bool:
    """Users may only follow threads under ``project-``."""
    return thread_id.startswith("project-")


async def typing_indicator(context: ConnectionContext, frame: dict[str, Any]) -> dict[str, Any]:
    """A command of the app's own: echo who is typing where."""
    return {"type": "typing_ack", "user_id": context.user_id, "thread_id": frame.get("thread_id")}


guard = WSGuard(
    Settings(demo_step_delay=0.01),
    authenticate=authenticate,
    hooks=CommandHooks(authorize_subscribe=may_subscribe, custom={"typing": typing_indicator}),
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with guard.lifespan():
        yield


app = FastAPI(lifespan=lifespan)
app.router.routes.extend(guard.routes("/ws"))


@app.post("/projects/{project}/deploy")
async def deploy(project: str, request: Request) -> dict[str, Any]:
    """An ordinary route of the app that streams progress to its caller's WebSocket tabs."""
    identity = await _caller(request)
    thread_id = f"project-{project}"
    offsets = []
    for step in ("queued", "building", "live"):
        published = await guard.hub.publish(identity.user_id, thread_id, "deploy", {"step": step})
        offsets.append(published.offset)
    return {"thread_id": thread_id, "offsets": offsets}


async def _caller(request: Request) -> Identity:
    try:
        return await authenticate(request)
    except Unauthorized as error:
        raise HTTPException(status_code=401, detail=str(error)) from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dev", action="store_true", help="accepted for the test harness")
    args = parser.parse_args()
    run_server(app, Settings(host=args.host, port=args.port), guard.drain)


if __name__ == "__main__":
    main()
