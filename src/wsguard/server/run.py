"""Serve an app on uvicorn with the settings' transport options."""

import uvicorn
from starlette.types import ASGIApp

from wsguard.settings import Settings


def run_server(app: ASGIApp, settings: Settings) -> int:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=settings.heartbeat_timeout,
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=settings.compression,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_level="warning",
        lifespan="on",
    )
    uvicorn.Server(config).run()
    return 0
