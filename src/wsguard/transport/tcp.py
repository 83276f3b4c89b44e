"""The two socket options wsguard sets on a connection's TCP socket, for both protocols.

A socket's and a stream's unsent bytes are bounded only if the kernel's share of them is: left to
autotune, the send buffer grows to megabytes a stalled peer never reads. And a connection cut off
for not reading must end with a reset: a plain close leaves the kernel retrying those bytes to a
peer that does not read, for minutes, and the peer none the wiser.
"""

import contextlib
import socket
import struct
from asyncio import Transport

RESET_ON_CLOSE = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on, 0 seconds: closing the socket resets the connection instead of a FIN."""


def _tcp_socket(transport: Transport) -> socket.socket | None:
    sock = transport.get_extra_info("socket")
    return sock if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) else None


def limit_send_buffer(transport: Transport, size: int) -> None:
    """Keep the kernel's send buffer at ``size`` (Linux doubles it)."""
    sock = _tcp_socket(transport)
    if sock is not None:
        with contextlib.suppress(OSError):  # the peer may be gone already
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def reset(transport: Transport) -> None:
    """Drop the connection now with a TCP reset, discarding what the peer did not read."""
    sock = _tcp_socket(transport)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    transport.abort()
