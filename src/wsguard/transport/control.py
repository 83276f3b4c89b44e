"""What the transport hands the app for each WebSocket and each event stream, under
``scope["extensions"]``.

The app needs five things that ASGI does not carry: how many bytes are still waiting to be
written (to bound a connection's unsent bytes as a whole), a way to write a frame without an
``await`` while the write buffer has room (so that an idle connection needs no writer task), a
way to drop a connection without a close handshake, a call the moment the socket closes (to
release it before any task runs), and when the server learned that the socket closed (to time
the cleanup). A stream (an HTTP response that lasts) needs the unsent bytes and the drop too,
so that it is bounded and closed as a socket is.
"""

from collections.abc import Callable
from typing import Protocol, runtime_checkable

CloseListener = Callable[[int, str], None]
"""Called with the close code and reason the app's ``websocket.disconnect`` carries."""

EXTENSION_KEY = "wsguard.transport"
"""The key under ``scope["extensions"]`` that holds a :class:`TransportControl`."""


@runtime_checkable
class TransportControl(Protocol):
    """The transport's side of one WebSocket connection."""

    def unsent_bytes(self) -> int:
        """Bytes accepted by the transport and not yet handed to the kernel."""
        ...

    def send_text_now(self, text: str) -> bool:
        """Write a text frame at once if the write buffer is below its high-water mark and the
        socket is open; False (nothing written) when the frame must wait for an ``await``."""
        ...

    def abort(self) -> None:
        """Reset the TCP connection now, without a close handshake, discarding what the peer did
        not read."""
        ...

    @property
    def closed_at(self) -> float | None:
        """``time.monotonic()`` when the server learned that the socket closed, else ``None``."""
        ...

    def on_closed(self, listener: CloseListener) -> None:
        """Call ``listener(code, reason)`` the moment the server learns the socket closed, from
        the event loop's own callback, before the app's receive task runs."""
        ...


HTTP_EXTENSION_KEY = "wsguard.http"
"""The key under ``scope["extensions"]`` of an HTTP request that holds a :class:`StreamControl`."""


@runtime_checkable
class StreamControl(Protocol):
    """The transport's side of one HTTP connection whose response is a long-lived stream: what
    a connection needs to bound and close it as it does a WebSocket."""

    def stream_started(self) -> None:
        """The response is a stream: the connection no longer waits for its request, so it
        leaves the per-address cap of unfinished connections, as an upgraded socket does, and
        its kernel send buffer is kept as modest as a socket's."""
        ...

    def unsent_bytes(self) -> int:
        """Bytes of the response accepted by the transport and not yet handed to the kernel."""
        ...

    def abort(self) -> None:
        """Reset the TCP connection now, discarding what the peer did not read (a stream whose
        peer stopped reading)."""
        ...
