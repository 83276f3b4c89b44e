"""File descriptor headroom: use the whole hard limit, and refuse new sockets before it runs out.

When ``accept()`` fails with EMFILE, asyncio stops accepting for a second at a time and the
listen queue fills: every client, good or bad, waits. Instead the server keeps a reserve at the
top of its descriptor table. The kernel always hands out the lowest free descriptor, so an
accepted socket numbered inside the reserve proves that every descriptor below it is in use:
that socket is closed at once (and counted), which keeps the accept loop running and leaves the
reserve to the app (its backend connection, its files).
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

logger = logging.getLogger("wsguard.transport")

MIN_RESERVE = 64
"""The fewest descriptors kept back, whatever the limit."""
LISTEN_QUEUE = 2048
"""The kernel's queue of connections not yet accepted (uvicorn's default backlog)."""


def reserve_for(limit: int) -> int:
    """Descriptors kept back under ``limit``: a sixteenth of it, at least :data:`MIN_RESERVE`."""
    return max(MIN_RESERVE, limit // 16)


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; log and return (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1048576)
    raised = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            raised = target
        except (OSError, ValueError) as error:
            logger.warning("file descriptors: cannot raise the soft limit %d to %d: %s", soft, target, error)
    logger.info(
        "file descriptors: soft limit %d, raised to %d (hard limit %s); new connections are "
        "refused within %d of it",
        soft,
        raised,
        "unlimited" if hard == resource.RLIM_INFINITY else hard,
        reserve_for(raised),
    )
    return soft, raised


def open_descriptors(pid: int | None = None) -> int | None:
    """How many descriptors this process (or process ``pid``) holds now, or ``None`` where the
    OS does not say.

    Linux 6.2 and later give the count as the size of ``/proc/PID/fd``: one ``stat`` instead of
    listing every descriptor (tens of milliseconds at 10,000 connections, for a figure that the
    dashboard, the probe and the leak harness take every second or more often). Elsewhere the
    size is 0, and the directory is listed.
    """
    directories = ("/proc/self/fd", "/dev/fd") if pid is None else (f"/proc/{pid}/fd",)
    try:
        counted = os.stat(directories[0]).st_size
    except OSError:
        counted = 0
    if counted > 0:
        return counted
    for directory in directories:
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return None


def descriptor_count(process: psutil.Process) -> int:
    """:func:`open_descriptors` of ``process``, else psutil's count (a system without ``/proc``);
    raises ``psutil.Error`` as psutil does for a process that is gone."""
    counted = open_descriptors(None if process.pid == os.getpid() else process.pid)
    return counted if counted is not None else process.num_fds()


@dataclass(frozen=True, slots=True)
class DescriptorBudget:
    """The process's descriptor limit and the reserve kept at its top."""

    limit: int

    @classmethod
    def current(cls) -> DescriptorBudget:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return cls(soft if soft != resource.RLIM_INFINITY else 1 << 30)

    @property
    def reserve(self) -> int:
        return reserve_for(self.limit)

    def refuses(self, descriptor: int) -> bool:
        """True for a new socket numbered inside the reserve (all lower ones are in use)."""
        return descriptor >= self.limit - self.reserve

    def low(self, open_count: int) -> bool:
        """True once fewer than two reserves are left: ``/readyz`` says so before refusals start."""
        return open_count >= self.limit - 2 * self.reserve


def widen_listen_queue(listeners: Iterable[socket.socket | object], backlog: int) -> None:
    """Set the kernel's listen queue of each listening socket to ``backlog``.

    asyncio uses one number both as the listen queue and as how many sockets it accepts in
    one pass; wsguard keeps the pass small (:func:`wsguard.transport.runner.accept_batch`) and
    the queue long, so that a burst waits in the kernel rather than being dropped.
    """
    for listener in listeners:
        fileno = getattr(listener, "fileno", None)
        if fileno is None:
            continue
        with socket.socket(fileno=os.dup(fileno())) as duplicate:
            if duplicate.type == socket.SOCK_STREAM:
                duplicate.listen(backlog)
