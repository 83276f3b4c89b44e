"""The standalone app (``WSGuard.server_app``) as ``wsguard serve`` runs it, with two additions for
tests: ``GET /tracked`` in front of it (after a full collection, how many objects the cyclic
garbage collector tracks, the qualified names of the suspended coroutines and async generators,
and how many young collections ran so far), and an ``authenticate`` with a bug: it raises for
the user ``crash``."""

import collections
import gc
import json
from types import AsyncGeneratorType, CoroutineType

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from wsguard import Identity, WSGuard
from wsguard.processes import script_settings
from wsguard.server.run import run_server


class Tracked:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/tracked":
            await self.app(scope, receive, send)
            return
        gc.collect()
        objects = gc.get_objects()
        coroutines = collections.Counter(
            o.cr_code.co_qualname for o in objects if isinstance(o, CoroutineType)
        )
        async_generators = collections.Counter(
            o.ag_code.co_qualname for o in objects if isinstance(o, AsyncGeneratorType)
        )
        young_collections = gc.get_stats()[0]["collections"]
        body = json.dumps(
            {
                "objects": len(objects),
                "coroutines": coroutines,
                "async_generators": async_generators,
                "young_collections": young_collections,
            }
        ).encode()
        del objects
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    settings = script_settings(max_connections_per_user=100, connect_rate_per_user=0)

    async def authenticate(connection: HTTPConnection) -> Identity:
        identity = await guard.tokens.authenticate(connection)
        if identity.user_id == "crash":
            raise RuntimeError("a bug in the application's authenticate")
        return identity

    guard = WSGuard(settings, authenticate=authenticate)
    run_server(Tracked(guard.server_app()), settings, guard.drain)


if __name__ == "__main__":
    main()
