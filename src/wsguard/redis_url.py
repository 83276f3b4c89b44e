"""Backend URLs, without the redis package: the ``redis-sentinel://`` and ``redis-cluster://``
forms parsed, any backend URL checked, and any of them redacted for logs and errors.

``redis-sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB]`` names the
Sentinels to ask and the service (the master's name in their configuration); the credentials
and the database are the master's, as in ``redis://``.

``redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]`` names some nodes of a Redis
Cluster (any of them; the client learns the rest from them) and the credentials every node
shares. A cluster has only database 0, so the URL has no path beyond ``/`` or ``/0``.

``redis://`` and ``rediss://`` are redis-py's own. Settings validation uses :func:`check_backend_url`,
so a bad URL is reported at start-up, naming ``--backend``, even where the redis extra is missing.
"""

from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

SENTINEL_SCHEME = "redis-sentinel"
SENTINEL_PREFIX = f"{SENTINEL_SCHEME}://"
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_FORM = "redis-sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]"

CLUSTER_SCHEME = "redis-cluster"
CLUSTER_PREFIX = f"{CLUSTER_SCHEME}://"
DEFAULT_PORT = 6379
CLUSTER_FORM = "redis-cluster://HOST:PORT[,HOST:PORT...]"

PLAIN_PREFIXES = ("redis://", "rediss://")


@dataclass(frozen=True)
class SentinelUrl:
    """Where to find the master: the Sentinels, the service they know it by, and how to log in."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class ClusterUrl:
    """Where to start discovering the cluster, and how to log in to its nodes."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_PREFIX)


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_PREFIX)


def check_backend_url(url: str) -> None:
    """Raise ValueError with a one-line reason when ``url`` is no backend wsguard can use
    (``memory`` or a Redis URL of one of the forms above); the reason never holds a password."""
    if is_sentinel_url(url):
        try:
            parse_sentinel_url(url)
        except ValueError as error:
            raise ValueError(f"bad redis-sentinel:// URL: {error}") from None
    elif is_cluster_url(url):
        try:
            parse_cluster_url(url)
        except ValueError as error:
            raise ValueError(f"bad redis-cluster:// URL: {error}") from None
    elif url != "memory" and not url.startswith(PLAIN_PREFIXES):
        raise ValueError(
            "must be 'memory', a redis:// URL, a redis-sentinel:// URL or a redis-cluster:// URL, "
            f"got {redact_url(url)!r}"
        )


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Raise ValueError with a one-line reason (never the URL itself: it may hold a password)."""
    parts = _split(url, SENTINEL_PREFIX, SENTINEL_FORM)
    username, password, hosts = _credentials(parts)
    sentinels = tuple(_host_port(item, DEFAULT_SENTINEL_PORT, "sentinel", SENTINEL_FORM) for item in hosts)
    segments = parts.path.split("/")[1:]
    if len(segments) == 2 and not segments[1]:
        segments.pop()
    if not segments or not segments[0] or len(segments) > 2:
        raise ValueError(f"needs the service name as its path: {SENTINEL_FORM}")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"database must be a number: {SENTINEL_FORM}")
        db = int(segments[1])
    return SentinelUrl(sentinels, unquote(segments[0]), db, username, password)


def parse_cluster_url(url: str) -> ClusterUrl:
    """Raise ValueError with a one-line reason (never the URL itself: it may hold a password)."""
    parts = _split(url, CLUSTER_PREFIX, CLUSTER_FORM)
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a cluster has only database 0, so no path: {CLUSTER_FORM}")
    username, password, hosts = _credentials(parts)
    return ClusterUrl(
        tuple(_host_port(item, DEFAULT_PORT, "node", CLUSTER_FORM) for item in hosts), username, password
    )


def _split(url: str, prefix: str, form: str) -> SplitResult:
    if not url.startswith(prefix):
        raise ValueError(f"expected {form}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"not a URL of the form {form}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"takes no query or fragment: {form}")
    return parts


def _credentials(parts: SplitResult) -> tuple[str | None, str | None, list[str]]:
    """The user name, the password and the comma-separated hosts of the URL's authority."""
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return username, password, hosts.split(",")


def _host_port(item: str, default_port: int, what: str, form: str) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad {what} address {item!r}: {form}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"every {what} needs a host: {form}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad {what} port {port_text!r}: {form}")
    return host, int(port_text)


def redact_url(url: str) -> str:
    """A URL fit for a log: ``redis://:secret@host/0`` becomes ``redis://:***@host/0``.

    The hosts are kept as written, so that a list of them (``redis-sentinel://``,
    ``redis-cluster://``) survives too.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a URL that cannot be parsed)"
    if password is None:
        return url
    user = parts.username or ""
    hosts = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))
