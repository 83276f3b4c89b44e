"""``redis-cluster://`` URLs: the nodes and credentials a good one names, and a one-line reason
for a bad one that never repeats the URL (it may hold a password)."""

import pytest

from wsguard.logs import redact_url
from wsguard.redis_cluster_url import DEFAULT_PORT, ClusterUrl, parse_cluster_url
from wsguard.settings import SettingError, Settings


def test_every_node_and_the_credentials() -> None:
    url = "redis-cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001,node-3"
    assert parse_cluster_url(url) == ClusterUrl(
        (("10.0.0.1", 7000), ("::1", 7001), ("node-3", DEFAULT_PORT)), "app", "p@ss"
    )
    assert parse_cluster_url("redis-cluster://:secret@h:1/") == ClusterUrl((("h", 1),), None, "secret")
    assert parse_cluster_url("redis-cluster://h/0") == ClusterUrl((("h", DEFAULT_PORT),))
    assert Settings(backend="redis-cluster://a:7000,b:7001").backend == "redis-cluster://a:7000,b:7001"


@pytest.mark.parametrize(
    "url",
    [
        "redis-cluster://",
        "redis-cluster://h:7000,/",
        "redis-cluster://h:port",
        "redis-cluster://h:70000",
        "redis-cluster://[::1",
        "redis-cluster://h:7000/1",
        "redis-cluster://h:7000/0/extra",
        "redis-cluster://h:7000?read_from_replicas=1",
    ],
)
def test_a_bad_url_is_a_setting_error_naming_the_backend_without_the_password(url: str) -> None:
    secret_url = url.replace("://", "://user:hunter2@", 1)
    with pytest.raises(SettingError) as raised:
        Settings(backend=secret_url)
    assert raised.value.setting == "backend"
    assert "redis-cluster://HOST:PORT" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_a_logged_cluster_url_keeps_every_node_and_hides_the_password() -> None:
    assert redact_url("redis-cluster://app:hunter2@a:7000,b:7001") == "redis-cluster://app:***@a:7000,b:7001"
