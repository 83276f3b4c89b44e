"""Where a generic run connects, how each client shows who it is, and how big the rounds are."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

IDENTITY = "{identity}"
NUMBER = "{n}"
DEFAULT_IDENTITY = "leakcheck-{n}"
DEFAULT_BROADCAST = "leakcheck {identity} message {n} "
"""What the talking client sends by default: plain text, padded to ``message_bytes``."""


def fill(template: str, **values: object) -> str:
    """``template`` with ``{name}`` replaced by ``values[name]``; other braces (JSON) stay as they are."""
    text = template
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


@dataclass(frozen=True)
class GenericTarget:
    """A running ASGI application wrapped in the probe.

    ``ws_url``, ``headers`` and ``on_connect`` may contain ``{identity}``: each client gets its
    own identity from ``identity`` (where ``{n}`` is the client's number), or one shared identity
    in the scenario that opens many connections of one user. ``broadcast`` is what a talking
    client sends (``{n}`` is the message's number); the app is expected to send it on to its other
    clients, as a chat room does.
    """

    ws_url: str
    probe_url: str
    headers: tuple[tuple[str, str], ...] = ()
    on_connect: tuple[str, ...] = ()
    identity: str = DEFAULT_IDENTITY
    broadcast: str = DEFAULT_BROADCAST
    pid: int | None = None

    def __post_init__(self) -> None:
        if urlsplit(self.ws_url).scheme not in {"ws", "wss"}:
            raise ValueError(f"the target must be a ws:// or wss:// URL, got {self.ws_url!r}")
        if urlsplit(self.probe_url).scheme not in {"http", "https"}:
            raise ValueError(f"the probe must be an http:// or https:// URL, got {self.probe_url!r}")

    def identity_of(self, number: int | str) -> str:
        return fill(self.identity, n=number)

    def url_for(self, identity: str) -> str:
        return fill(self.ws_url, identity=identity)

    def headers_for(self, identity: str) -> dict[str, str]:
        return {name: fill(value, identity=identity) for name, value in self.headers}

    def script_for(self, identity: str) -> list[str]:
        return [fill(message, identity=identity) for message in self.on_connect]

    def message(self, identity: str, number: int, size: int) -> str:
        text = fill(self.broadcast, identity=identity, n=number)
        return text + "x" * max(0, size - len(text.encode()))


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` as ``("Name", "value")``; a clear error otherwise."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise ValueError(f"a header is 'Name: value', got {text!r}")
    return name.strip(), value.strip()


@dataclass(frozen=True)
class GenericSizes:
    """How big the generic rounds are and the bounds they must stay under.

    ``stall_growth_fraction``: while a reader is stalled, the app may hold at most this fraction of
    the bytes it was asked to send it, or ``stall_floor_bytes`` when that is more (the kernel's
    buffers take some; a bounded queue a little); an unbounded queue holds nearly all of it.
    """

    name: str = "generic"
    warmup_rounds: int = 1
    rounds: int = 2
    clients: int = 10
    hold_s: float = 0.05
    churn_cycles: int = 200
    churn_rounds: int = 4
    churn_blocks_bound: float = 1.0
    churn_rss_bound: float = 4096.0
    cleanup_bound_s: float = 2.0
    message_bytes: int = 4096
    stall_messages: int = 6000
    stall_growth_fraction: float = 0.25
    stall_floor_bytes: float = 4 * 1024 * 1024
    stall_send_timeout_s: float = 1.0
    stall_receive_buffer: int = 4096
    leavers: int = 8
    leaver_messages: int = 20
    reply_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        for field_name in ("rounds", "clients", "churn_rounds", "stall_messages", "leavers"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"{field_name} must be at least 1")
        if self.churn_rounds < 2:
            raise ValueError("churn_rounds must be at least 2 (a slope needs two points)")
        if self.cleanup_bound_s <= 0:
            raise ValueError("the cleanup bound must be positive")
