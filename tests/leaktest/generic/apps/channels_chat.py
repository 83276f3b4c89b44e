"""A Django Channels chat room on the in-memory channel layer.

``leaky``: the consumer joins the room's group on connect and never calls ``group_discard``, so
every connection that ever joined stays a member (the layer keeps members for a day). ``fixed``:
the consumer leaves the group however it ends. Discarding in ``disconnect`` alone is not enough:
a consumer whose ``send`` fails because its client left mid-broadcast dies with that error and
Channels never calls its ``disconnect`` (the generic ``broadcast_disconnect`` scenario finds
that: 7 members left behind in one round).
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        SECRET_KEY="leak-test-only",
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path

from wsguard.probe import ASGIApp, instrument


class LeakyChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    room = "leaky-room"

    async def connect(self) -> None:
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send(self.room, {"type": "chat.message", "text": text_data})

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


class FixedChatConsumer(LeakyChatConsumer):
    room = "fixed-room"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.channel_layer.group_discard(self.room, self.channel_name)


def members(room: str) -> int:
    return len(get_channel_layer().groups.get(room, {}))


def build(consumer: type[LeakyChatConsumer]) -> ASGIApp:
    router = ProtocolTypeRouter(
        {"websocket": URLRouter([re_path(r"^ws/(?P<user_id>[^/]+)$", consumer.as_asgi())])}
    )
    return instrument(router, counts={"group_members": lambda: members(consumer.room)})


leaky = build(LeakyChatConsumer)
fixed = build(FixedChatConsumer)
