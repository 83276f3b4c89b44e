"""The log formatters: JSON with the context ids, and no secret in any line."""

import json
import logging

import pytest

from wsguard.logs import JsonFormatter, TextFormatter, log_context, redact
from wsguard.redis_url import redact_url
from wsguard.settings import SettingError, Settings

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("wsguard", logging.INFO, __file__, 1, message, args, None)


def test_redact_hides_tokens_tickets_bearers_and_url_passwords() -> None:
    text = f"token {TOKEN} GET /ws?ticket=tk_abc&x=1 Authorization: Bearer opaque redis://u:pw@h:1/0"
    redacted = redact(text)
    for secret in (TOKEN, "tk_abc", "opaque", ":pw@"):
        assert secret not in redacted, redacted
    assert "x=1" in redacted
    assert "redis://u:[redacted]@h:1/0" in redacted
    assert redact_url("redis://:s3cret@host:6379/2") == "redis://:***@host:6379/2"
    assert redact(redact_url("redis://:s3cret@host:6379/2")) == "redis://:***@host:6379/2"
    sentinel = "redis-sentinel://u:s3cret@a:26379,b:26380/main/1"
    assert redact_url(sentinel) == "redis-sentinel://u:***@a:26379,b:26380/main/1"
    assert "s3cret" not in redact(f"backend {sentinel} down")


def test_json_line_carries_the_context_ids_and_extras_and_no_token() -> None:
    with log_context(connection_id="conn_1", user_id="alice"), log_context(session_id="sess_1"):
        line = JsonFormatter().format(_record("refused %s", TOKEN))
    record = json.loads(line)
    assert record["connection_id"] == "conn_1"
    assert record["user_id"] == "alice"
    assert record["session_id"] == "sess_1"
    assert record["message"] == "refused [redacted]"
    outside = _record("released")
    outside.request_id = "req_9"
    assert json.loads(JsonFormatter().format(outside))["request_id"] == "req_9"
    assert "connection_id" not in json.loads(JsonFormatter().format(_record("plain")))


def test_text_line_appends_the_context_ids() -> None:
    with log_context(user_id="bob", request_id="req_2"):
        line = TextFormatter(use_colors=False).format(_record("run started"))
    assert line.endswith("run started user_id=bob request_id=req_2"), line


def test_a_bad_backend_setting_names_it_without_its_password() -> None:
    with pytest.raises(SettingError) as refused:
        Settings(backend="http://:s3cret@host:6379/0")
    assert refused.value.setting == "backend"
    assert "s3cret" not in str(refused.value)
