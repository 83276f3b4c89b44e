"""Backend URLs: the ``redis-sentinel://`` form parsed, and any of them redacted for logs and errors,
without the redis package.

``redis-sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB]`` names the
Sentinels to ask and the service (the master's name in their configuration); the credentials
and the database are the master's, as in ``redis://``. Settings validation uses it, so a bad
URL is reported at start-up, naming ``--backend``, even where the redis extra is missing.
"""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

SENTINEL_SCHEME = "redis-sentinel"
SENTINEL_PREFIX = f"{SENTINEL_SCHEME}://"
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_FORM = "redis-sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]"


@dataclass(frozen=True)
class SentinelUrl:
    """Where to find the master: the Sentinels, the service they know it by, and how to log in."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_PREFIX)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Raise ValueError with a one-line reason (never the URL itself: it may hold a password)."""
    if not is_sentinel_url(url):
        raise ValueError(f"expected {SENTINEL_FORM}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"not a URL of the form {SENTINEL_FORM}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"takes no query or fragment: {SENTINEL_FORM}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(item) for item in hosts.split(","))
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


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad sentinel address {item!r}: {SENTINEL_FORM}")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"every sentinel needs a host: {SENTINEL_FORM}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad sentinel port {port_text!r}: {SENTINEL_FORM}")
    return host, int(port_text)


def redact_url(url: str) -> str:
    """A URL fit for a log: ``redis://:secret@host/0`` becomes ``redis://:***@host/0``.

    The hosts are kept as written, so that a list of them (``redis-sentinel://``) survives too.
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
