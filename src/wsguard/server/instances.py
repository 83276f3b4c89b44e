"""This instance's report of itself, and on Redis its registration, renewed until it stops.

The registration expires one lease TTL after the last renewal, so a killed instance leaves the
list as its leases stop counting; a stopped one removes itself at once.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time

import psutil

from wsguard.backends.base import BackendUnavailable
from wsguard.backends.presence import InstanceInfo
from wsguard.periodic import Periodic
from wsguard.runtime.hub import Hub
from wsguard.version import __version__

logger = logging.getLogger("wsguard")


class InstanceReporter:
    """Describes this instance; with a cluster directory, keeps it registered there."""

    def __init__(self, hub: Hub, ttl: float) -> None:
        self.hub = hub
        self.ttl = ttl
        self.started_at = time.time()
        self._process = psutil.Process()
        self._host = socket.gethostname()
        self._version = __version__
        self._renewal = Periodic(
            ttl / 3,
            self._register,
            name="wsguard instance registration",
            survive=(BackendUnavailable,),
            on_error=_not_renewed,
        )
        """A registration Redis refused is tried again at the next renewal; any other error stops it."""

    def describe(self) -> InstanceInfo:
        return InstanceInfo(
            instance_id=self.hub.instance_id,
            host=self._host,
            pid=os.getpid(),
            started_at=self.started_at,
            version=self._version,
            connections=self.hub.registry.connection_count,
            users=self.hub.registry.user_count,
            rss_bytes=self._process.memory_info().rss,
            backend_up=self.hub.backend.up,
            reported_at=time.time(),
        )

    async def instances(self) -> list[InstanceInfo]:
        """Every live instance of the cluster (this one's own report fresh), or this one alone."""
        mine = self.describe()
        directory = self.hub.backend.directory
        if directory is None or not self.hub.backend.up:
            return [mine]
        try:
            found = await directory.instances()
        except BackendUnavailable:
            return [mine]
        others = [info for info in found if info.instance_id != mine.instance_id]
        return sorted([mine, *others], key=lambda info: (info.started_at, info.instance_id))

    def start(self) -> None:
        if self.hub.backend.directory is not None:
            self._renewal.start()

    async def stop(self) -> None:
        """Stop renewing and remove the registration (if Redis answers)."""
        if not self._renewal.running:
            return
        await self._renewal.stop()
        directory = self.hub.backend.directory
        if directory is not None:
            with contextlib.suppress(BackendUnavailable, TimeoutError):
                async with asyncio.timeout(1.0):
                    await directory.unregister(self.hub.instance_id)

    async def _register(self) -> None:
        directory = self.hub.backend.directory
        assert directory is not None
        if self.hub.backend.up:
            await directory.register(self.describe(), self.ttl)


def _not_renewed(error: Exception) -> None:
    logger.info("instance registration not renewed: %s", error)
