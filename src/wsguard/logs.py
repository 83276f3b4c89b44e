"""Log lines an operator can read: text or JSON, with the ids of the work in hand, never a secret.

The ids (``connection_id``, ``user_id``, ``session_id``, ``request_id``) ride on a context
variable set where the work begins (the upgrade, the request that starts a run), so every line
logged below it, in any task it starts, carries them without passing them around. Every line
goes through :func:`redact` last: a JWT, a ticket, an API key or a URL's password never reaches
the output.
"""

import json
import logging
import re
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import Any

from uvicorn.logging import DefaultFormatter

CONTEXT_FIELDS = ("connection_id", "user_id", "session_id", "request_id")

_context: ContextVar[dict[str, str] | None] = ContextVar("wsguard_log_context", default=None)

_SECRETS = re.compile(
    r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # a JWT (its header always starts eyJ)
    r"|(?<=ticket=)[^&\s\"']+"  # a ticket in a query string
    r"|(?<=Bearer )[^\s\"']+"  # any bearer credential
    r"|(?P<user>://[^/@\s:]*:)(?!\*\*\*@)[^/@\s]+(?=@)"  # a URL's password, unless already hidden
    # an API key: "X-API-Key: K", "Authorization: apikey K", ('x-api-key', 'K'), api_key=K
    r"|(?P<name>(?i:api[_-]?key)(?:[\"']?\s*[:=,]\s*b?[\"']?|\s+))(?!\[redacted\])[^\s\"'&,]+"
)
_hidden: set[str] = set()
_HIDDEN: re.Pattern[str] | None = None
"""The exact strings :func:`hide` was given, longest first: whatever a line says around them."""


def _hide(match: re.Match[str]) -> str:
    return (match.group("user") or match.group("name") or "") + "[redacted]"


def hide(values: Iterable[str]) -> None:
    """Redact these exact strings (the configured API keys) from every line from now on."""
    global _HIDDEN
    _hidden.update(value for value in values if value)
    by_length = sorted(_hidden, key=len, reverse=True)
    _HIDDEN = re.compile("|".join(re.escape(value) for value in by_length)) if by_length else None


def redact(text: str) -> str:
    """``text`` with every token, ticket, bearer credential, API key and URL password replaced."""
    text = _SECRETS.sub(_hide, text)
    hidden = _HIDDEN
    return hidden.sub("[redacted]", text) if hidden is not None else text


def log_context(**fields: str | None) -> AbstractContextManager[None]:
    """Every line logged inside the block (and in tasks started in it) carries ``fields``."""
    return _LogContext({k: v for k, v in fields.items() if v is not None})


class _LogContext:
    """:func:`log_context`'s block: a small object rather than a generator, since every open
    connection holds one for as long as it lives."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields
        self._token: Token[dict[str, str] | None] | None = None

    def __enter__(self) -> None:
        outer = _context.get()
        self._token = _context.set({**outer, **self._fields} if outer else self._fields)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def _fields_of(record: logging.LogRecord) -> dict[str, str]:
    """The context ids of the record: ``extra=`` beats the context variable."""
    found = dict(_context.get() or {})
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if isinstance(value, str):
            found[name] = value
    return found


class TextFormatter(DefaultFormatter):
    """uvicorn's text lines, with the context ids appended and secrets redacted."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, **options: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelprefix)s %(message)s", datefmt, **options)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields_of(record)
        if fields:
            line += " " + " ".join(f"{k}={fields[k]}" for k in CONTEXT_FIELDS if k in fields)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context ids, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields_of(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, ensure_ascii=False, default=str))


def formatters(log_format: str) -> dict[str, dict[str, Any]]:
    """The ``formatters`` section of a logging dictConfig for ``text`` or ``json``."""
    if log_format == "json":
        chosen: dict[str, Any] = {"()": "wsguard.logs.JsonFormatter"}
        return {"default": chosen, "access": chosen}
    return {
        "default": {"()": "wsguard.logs.TextFormatter", "use_colors": None},
        "access": {"()": "wsguard.logs.TextFormatter", "use_colors": None},
    }
