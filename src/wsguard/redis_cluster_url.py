"""The ``redis-cluster://`` backend URL, parsed without the redis package.

``redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]`` names some nodes of a Redis
Cluster (any of them; the client learns the rest from them) and the credentials every node
shares. A cluster has only database 0, so the URL has no path beyond ``/`` or ``/0``. Settings
validation uses it, so a bad URL is reported at start-up, naming ``--backend``, even where the
redis extra is missing.
"""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

CLUSTER_SCHEME = "redis-cluster"
CLUSTER_PREFIX = f"{CLUSTER_SCHEME}://"
DEFAULT_PORT = 6379
CLUSTER_FORM = "redis-cluster://HOST:PORT[,HOST:PORT...]"


@dataclass(frozen=True)
class ClusterUrl:
    """Where to start discovering the cluster, and how to log in to its nodes."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_PREFIX)


def parse_cluster_url(url: str) -> ClusterUrl:
    """Raise ValueError with a one-line reason (never the URL itself: it may hold a password)."""
    if not is_cluster_url(url):
        raise ValueError(f"expected {CLUSTER_FORM}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"not a URL of the form {CLUSTER_FORM}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"takes no query or fragment: {CLUSTER_FORM}")
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a cluster has only database 0, so no path: {CLUSTER_FORM}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return ClusterUrl(tuple(_host_port(item) for item in hosts.split(",")), username, password)


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad node address {item!r}: {CLUSTER_FORM}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"every node needs a host: {CLUSTER_FORM}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad node port {port_text!r}: {CLUSTER_FORM}")
    return host, int(port_text)
