"""What a machine without the optional packages can import and run (the wheel itself is checked
by ``.ci/package-check``; these catch a regression in ``make test``)."""

from __future__ import annotations

import subprocess
import sys

SERVER_MODULES = (
    "starlette",
    "uvicorn",
    "jwt",
    "prometheus_client",
    "httpx",
    "wsguard.server",
    "wsguard.runtime",
)

WITHOUT_REDIS = "import sys; sys.modules['redis'] = None  # import redis now raises ImportError\n"
"""A prelude that makes the interpreter behave as if the redis package were not installed."""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_client_import_loads_no_server_module() -> None:
    code = (
        "import sys\n"
        "import wsguard.client\n"
        "from wsguard.client import ReconnectPolicy, connect, http_ticket_provider\n"
        f"print(sorted(set({SERVER_MODULES!r}) & set(sys.modules)))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import wsguard.client loaded {result.stdout.strip()}"


def test_publisher_import_loads_no_server_module() -> None:
    """A worker process (Celery, RQ, Arq) imports the publisher and makes Redis publishers of each
    kind without the server: no Starlette, uvicorn, PyJWT, Prometheus client, httpx."""
    code = (
        "import sys\n"
        "import wsguard.publisher\n"
        "from wsguard.publisher import AsyncPublisher, Publisher, PublishError, PublishItem\n"
        f"print(sorted(set({SERVER_MODULES!r}) & set(sys.modules)))\n"
        "Publisher.from_url('redis://127.0.0.1:1/0').publish_many([])\n"
        "Publisher.from_url('redis-sentinel://127.0.0.1:1/service')\n"
        "AsyncPublisher.from_url('redis-cluster://127.0.0.1:1')\n"
        f"print(sorted(set({SERVER_MODULES!r}) & set(sys.modules)))\n"
        "Publisher.from_url('http://127.0.0.1:1', api_key='k')\n"
        f"print(sorted(set({SERVER_MODULES!r}) & set(sys.modules)))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    imported, with_redis, with_http = result.stdout.strip().splitlines()
    assert imported == "[]", f"import wsguard.publisher loaded {imported}"
    assert with_redis == "[]", f"a Redis publisher loaded {with_redis}"
    assert with_http == "['httpx']", f"an HTTP publisher loaded {with_http}"


def test_publisher_over_http_needs_no_redis_and_over_redis_names_the_extra() -> None:
    code = WITHOUT_REDIS + (
        "from wsguard.publisher import Publisher\n"
        "Publisher.from_url('https://example.invalid', api_key='k').close()\n"
        "try:\n"
        "    Publisher.from_url('redis://127.0.0.1:1/0')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == "publishing through Redis needs the redis package: pip install 'wsguard[redis]'"
    )


def test_top_level_names_still_resolve_on_first_use() -> None:
    code = (
        "import sys, wsguard\n"
        "assert 'wsguard.server.guard' not in sys.modules\n"
        "from wsguard import WSGuard, Settings, CommandHooks\n"
        "import wsguard.server.guard as guard\n"
        "assert WSGuard is guard.WSGuard and 'WSGuard' in dir(wsguard)\n"
        "try:\n"
        "    wsguard.NoSuchName\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "no attribute 'NoSuchName'" in result.stdout


def test_leak_harness_and_pytest_plugin_import_without_redis() -> None:
    code = WITHOUT_REDIS + (
        "import wsguard.leaktest.pytest_plugin, wsguard.leaktest.cli, wsguard.processes\n"
        "from wsguard.cli import main\n"
        "try:\n"
        "    main(['leakcheck', '--help'])\n"
        "except SystemExit as done:\n"
        "    print('exit', done.code)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "--cluster" in result.stdout
    assert result.stdout.rstrip().endswith("exit 0")


def test_redis_backend_without_redis_is_one_line_naming_the_extra() -> None:
    code = WITHOUT_REDIS + (
        "from wsguard.cli import main\n"
        "print('exit', main(['serve', '--dev', '--backend', 'redis://127.0.0.1:1/0']))\n"
    )
    result = run_python(code)
    assert result.stdout.strip() == "exit 2", result.stderr
    assert result.stderr.strip().splitlines() == [
        "wsguard: --backend (WSGUARD_BACKEND): a Redis backend needs the redis package: "
        "pip install 'wsguard[redis]'"
    ]


def test_cluster_without_redis_is_one_line_naming_the_extra() -> None:
    code = WITHOUT_REDIS + (
        "from wsguard.cli import main\nprint('exit', main(['leakcheck', '--cluster', '2']))\n"
    )
    result = run_python(code)
    assert result.stdout.strip() == "exit 2", result.stderr
    assert result.stderr.strip().splitlines() == [
        "wsguard leakcheck: --cluster needs the redis package: pip install 'wsguard[redis]'"
    ]
