"""``redis-sentinel://`` URLs: what a good one names, and a one-line reason for a bad one that
never repeats the URL (it may hold a password)."""

import pytest

from wsguard.redis_url import DEFAULT_SENTINEL_PORT, SentinelUrl, parse_sentinel_url
from wsguard.settings import SettingError, Settings


def test_every_sentinel_the_service_the_db_and_the_credentials() -> None:
    url = "redis-sentinel://app:p%40ss@10.0.0.1:26380,[::1]:26381,sentinel-3/main/2"
    assert parse_sentinel_url(url) == SentinelUrl(
        (("10.0.0.1", 26380), ("::1", 26381), ("sentinel-3", DEFAULT_SENTINEL_PORT)), "main", 2, "app", "p@ss"
    )
    assert parse_sentinel_url("redis-sentinel://:secret@h:1/main") == SentinelUrl(
        (("h", 1),), "main", 0, None, "secret"
    )
    default_port = SentinelUrl((("h", DEFAULT_SENTINEL_PORT),), "main")
    assert parse_sentinel_url("redis-sentinel://h/main/") == default_port


@pytest.mark.parametrize(
    "url",
    [
        "redis-sentinel://h:26379",
        "redis-sentinel://h:26379/",
        "redis-sentinel:///main",
        "redis-sentinel://h:26379,/main",
        "redis-sentinel://h:port/main",
        "redis-sentinel://h:70000/main",
        "redis-sentinel://[::1/main",
        "redis-sentinel://h/main/zero",
        "redis-sentinel://h/main/0/extra",
        "redis-sentinel://h/main?db=1",
    ],
)
def test_a_bad_url_is_a_setting_error_naming_the_backend_without_the_password(url: str) -> None:
    secret_url = url.replace("://", "://user:hunter2@", 1)
    with pytest.raises(SettingError) as raised:
        Settings(backend=secret_url)
    assert raised.value.setting == "backend"
    assert "redis-sentinel://HOST:PORT" in str(raised.value)
    assert "hunter2" not in str(raised.value)
