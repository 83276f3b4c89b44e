"""``redis-sentinel://`` and ``redis-cluster://`` URLs: what a good one names, and a one-line
reason for a bad one that never repeats the URL (it may hold a password)."""

import pytest

from wsguard.redis_url import (
    DEFAULT_PORT,
    DEFAULT_SENTINEL_PORT,
    ClusterUrl,
    SentinelUrl,
    parse_cluster_url,
    parse_sentinel_url,
    redact_url,
)
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


def test_every_node_and_the_credentials() -> None:
    url = "redis-cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001,node-3"
    assert parse_cluster_url(url) == ClusterUrl(
        (("10.0.0.1", 7000), ("::1", 7001), ("node-3", DEFAULT_PORT)), "app", "p@ss"
    )
    assert parse_cluster_url("redis-cluster://:secret@h:1/") == ClusterUrl((("h", 1),), None, "secret")
    assert parse_cluster_url("redis-cluster://h/0") == ClusterUrl((("h", DEFAULT_PORT),))
    assert Settings(backend="redis-cluster://a:7000,b:7001").backend == "redis-cluster://a:7000,b:7001"


@pytest.mark.parametrize(
    ("url", "form"),
    [
        *(
            (url, "redis-sentinel://HOST:PORT")
            for url in (
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
            )
        ),
        *(
            (url, "redis-cluster://HOST:PORT")
            for url in (
                "redis-cluster://",
                "redis-cluster://h:7000,/",
                "redis-cluster://h:port",
                "redis-cluster://h:70000",
                "redis-cluster://[::1",
                "redis-cluster://h:7000/1",
                "redis-cluster://h:7000/0/extra",
                "redis-cluster://h:7000?read_from_replicas=1",
            )
        ),
        ("postgres://h:5432/db", "redis-cluster:// URL"),
    ],
)
def test_a_bad_url_is_a_setting_error_naming_the_backend_without_the_password(url: str, form: str) -> None:
    secret_url = url.replace("://", "://user:hunter2@", 1)
    with pytest.raises(SettingError) as raised:
        Settings(backend=secret_url)
    assert raised.value.setting == "backend"
    assert form in str(raised.value)
    assert "hunter2" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_logged_url_keeps_every_host_and_hides_the_password() -> None:
    assert redact_url("redis-cluster://app:hunter2@a:7000,b:7001") == "redis-cluster://app:***@a:7000,b:7001"
    assert (
        redact_url("redis-sentinel://:hunter2@a,b:26380/main/1") == "redis-sentinel://:***@a,b:26380/main/1"
    )
