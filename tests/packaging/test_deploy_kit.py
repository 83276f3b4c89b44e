"""The deploy kit (deploy/) held to the code, as test_docs_match_code.py holds the docs: every
wsguard flag and variable it names exists, every path it probes is a route, its ports agree, and
every grace period outlasts the drain it waits for. No YAML parser is installed: the files are
read with regexes, and the kit keeps to the forms they read (``key: value`` lines, flow-style
``{name: ..., value: "..."}`` env entries)."""

from __future__ import annotations

import re

import pytest

from tests.packaging.test_docs_match_code import ROOT
from wsguard.cli import FLAGS, OPTIONS, ORIGINS
from wsguard.server.guard import WSGuard
from wsguard.settings import Settings

DEPLOY = ROOT / "deploy"
DEPLOY_GUIDE = ROOT / "docs" / "deploy.md"
KIT = {
    path.relative_to(DEPLOY).as_posix(): path.read_text(encoding="utf-8")
    for path in sorted(DEPLOY.rglob("*"))
    if path.is_file()
}
TRYING_ONLY = "kubernetes/redis-for-trying.yaml"
"""Redis, not wsguard: left out of the port and grace checks."""
DEFAULTS = Settings()
CLOUD_RUN_KILL_AFTER = 10
"""Seconds Cloud Run waits between SIGTERM and SIGKILL (fixed by the platform)."""

OTHER_TOOLS = {
    "Dockerfile": {
        "--from": "COPY",
        "--interval": "HEALTHCHECK",
        "--timeout": "HEALTHCHECK",
        "--start-period": "HEALTHCHECK",
        "--retries": "HEALTHCHECK",
        "--no-cache-dir": "pip",
        "--no-deps": "pip",
        "--wheel-dir": "pip",
        "--system": "useradd",
        "--uid": "useradd",
        "--no-create-home": "useradd",
        "--shell": "useradd",
        "--stop-timeout": "docker run",
    },
    "compose.yaml": {"--build": "docker compose up"},
    "kubernetes/deployment.yaml": {"--from-literal": "kubectl create secret"},
    "kubernetes/redis-for-trying.yaml": {"--save": "redis-server", "--appendonly": "redis-server"},
    "cloudrun/service.yaml": {"--region": "gcloud"},
}
"""Every ``--flag`` of the kit that is not wsguard's, with the tool it belongs to. A flag in
neither this list nor ``wsguard serve`` is a misspelling."""

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w*-])")
"""A flag, not a family of them (``--ssl-*``)."""
VARIABLE = re.compile(r"\bWSGUARD_[A-Z0-9_]+\b")


def _serve_flags() -> set[str]:
    options = [*OPTIONS, *FLAGS, ORIGINS]
    return {option.flag for option in options} | {f"--no-{option.flag[2:]}" for option in FLAGS}


def _serve_variables() -> set[str]:
    return {option.variable for option in [*OPTIONS, *FLAGS, ORIGINS]}


def _block(text: str, key: str) -> str:
    """The lines indented under the first ``key:`` line of a YAML file (with that line)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(rf"\s*(- )?{re.escape(key)}:", line):
            indent = len(line) - len(line.lstrip(" -"))
            block = [line]
            for following in lines[index + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following)
            return "\n".join(block)
    raise AssertionError(f"no {key}: in the file")


def _code(text: str) -> str:
    """``text`` without its comments (``#`` to the end of a line, at its start or after a space)."""
    return re.sub(r"(?m)(^|\s)#.*$", "", text)


def _setting(text: str, variable: str) -> str | None:
    """The value a file gives a WSGUARD_* variable (compose mapping or Kubernetes env entry) or
    its flag, outside comments; ``None`` when it gives none."""
    flag = "--" + variable.removeprefix("WSGUARD_").lower().replace("_", "-")
    text = _code(text)
    for pattern in (
        rf"\b{variable}:\s*\"?([^\"\s]+)",
        rf"name:\s*{variable},\s*value:\s*\"([^\"]*)\"",
        rf"\"{flag}\",\s*\"([^\"]+)\"",
        rf"{flag}[ =]([\w.]+)",
    ):
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    return None


def _instructions(dockerfile: str) -> list[str]:
    """A Dockerfile's lines, each continued line (``\\`` at its end) joined to the next."""
    return re.sub(r"\\\n\s*", " ", dockerfile).splitlines()


def _drain(name: str) -> float:
    given = _setting(KIT[name], "WSGUARD_DRAIN_TIMEOUT")
    return float(given) if given is not None else DEFAULTS.drain_timeout


def _heartbeat(name: str) -> float:
    interval = _setting(KIT[name], "WSGUARD_HEARTBEAT_INTERVAL")
    timeout = _setting(KIT[name], "WSGUARD_HEARTBEAT_TIMEOUT")
    return float(interval or DEFAULTS.heartbeat_interval) + float(timeout or DEFAULTS.heartbeat_timeout)


def _numbers(pattern: str, text: str) -> list[int]:
    return [int(found) for found in re.findall(pattern, text)]


def test_the_kit_has_every_file_the_guide_names() -> None:
    guide = DEPLOY_GUIDE.read_text(encoding="utf-8")
    named = set(re.findall(r"\bdeploy/([\w./-]*\w)", guide))
    assert sorted(name for name in named if not (DEPLOY / name).exists()) == []
    unnamed = [name for name in KIT if name not in named and not name.endswith(".dockerignore")]
    assert unnamed == [], "kit files docs/deploy.md does not mention"


@pytest.mark.parametrize("name", sorted(KIT))
def test_every_flag_is_wsguards_or_a_named_tools(name: str) -> None:
    others = OTHER_TOOLS.get(name, {})
    found = set(FLAG.findall(KIT[name]))
    assert sorted(found - _serve_flags() - set(others)) == [], "not a wsguard serve flag (misspelt?)"
    assert sorted(set(others) - found) == [], "listed in OTHER_TOOLS but no longer used"
    assert not set(others) & _serve_flags(), "a wsguard flag listed as another tool's"


@pytest.mark.parametrize("name", sorted(KIT))
def test_every_wsguard_variable_is_a_setting(name: str) -> None:
    assert sorted(set(VARIABLE.findall(KIT[name])) - _serve_variables()) == []


def test_the_guide_names_only_real_settings() -> None:
    guide = DEPLOY_GUIDE.read_text(encoding="utf-8")
    others = {"--stop-timeout", "--from-literal", "--region", "--build"}  # docker, kubectl, gcloud
    assert sorted(set(FLAG.findall(guide)) - _serve_flags() - others) == []
    assert sorted(set(VARIABLE.findall(guide)) - _serve_variables()) == []


def test_every_probed_path_is_a_route() -> None:
    routes = [getattr(route, "path_regex", None) for route in WSGuard(Settings(dev=True)).routes()]
    paths = {
        f"{name}: {path}"
        for name, text in KIT.items()
        if name != TRYING_ONLY
        for path in [
            *re.findall(r"\bpath:\s*(/[^\s,}]*)", text),
            *re.findall(r"\b(?:https?|wss?)://[^/\s'\"]+(/[^\s'\"?]*)", text),
        ]
    }
    assert paths, "no probe found"
    missing = [
        entry
        for entry in sorted(paths)
        if not any(regex and regex.match(entry.partition(": ")[2]) for regex in routes)
    ]
    assert missing == []
    for name in ("kubernetes/deployment.yaml", "cloudrun/service.yaml"):
        assert "path: /healthz" in _block(KIT[name], "livenessProbe"), name
    assert "path: /readyz" in _block(KIT["kubernetes/deployment.yaml"], "readinessProbe")
    assert "path: /readyz" in _block(KIT["cloudrun/service.yaml"], "startupProbe")
    assert "/healthz" in next(
        line for line in _instructions(KIT["Dockerfile"]) if line.startswith("HEALTHCHECK")
    )


def test_the_ports_agree() -> None:
    listens = {_setting(text, "WSGUARD_PORT") for name, text in KIT.items() if name != TRYING_ONLY}
    assert listens == {None}, "the kit sets the port: give it everywhere or nowhere"
    dockerfile, compose = KIT["Dockerfile"], KIT["compose.yaml"]
    ports = {
        "Dockerfile EXPOSE": _numbers(r"(?m)^EXPOSE\s+(\d+)", dockerfile),
        "Dockerfile HEALTHCHECK": _numbers(r"or '(\d+)'", dockerfile),
        "compose.yaml expose": _numbers(r"expose:\s*\[\"(\d+)\"\]", compose),
        "nginx.conf upstream": _numbers(r"(?m)^\s*server\s+[\w.-]+:(\d+)[\s;]", KIT["nginx.conf"]),
        "deployment.yaml containerPort": _numbers(
            r"containerPort:\s*(\d+)", KIT["kubernetes/deployment.yaml"]
        ),
        "deployment.yaml probes": _numbers(r"httpGet:.*port:\s*(\d+)", KIT["kubernetes/deployment.yaml"]),
        "service.yaml targetPort": _numbers(r"targetPort:\s*(\d+)", KIT["kubernetes/service.yaml"]),
        "cloudrun containerPort": _numbers(r"containerPort:\s*(\d+)", KIT["cloudrun/service.yaml"]),
        "cloudrun probes": _numbers(r"httpGet:.*port:\s*(\d+)", KIT["cloudrun/service.yaml"]),
    }
    assert all(ports.values()), f"a port not found: {ports}"
    assert {where: found for where, found in ports.items() if set(found) != {DEFAULTS.port}} == {}
    assert len(ports["nginx.conf upstream"]) >= 2, "nginx balances at least two instances"


def test_grace_periods_outlast_the_drains() -> None:
    deployment = KIT["kubernetes/deployment.yaml"]
    (grace,) = _numbers(r"terminationGracePeriodSeconds:\s*(\d+)", deployment)
    (pre_stop,) = _numbers(r"\"sleep\",\s*\"(\d+)\"", _block(deployment, "preStop"))
    assert grace > pre_stop + _drain("kubernetes/deployment.yaml")
    (stop_grace,) = _numbers(r"stop_grace_period:\s*(\d+)s\b", KIT["compose.yaml"])
    assert stop_grace > _drain("compose.yaml")
    (docker_stop,) = _numbers(r"--stop-timeout (\d+)", KIT["Dockerfile"])
    assert docker_stop > _drain("Dockerfile")
    assert _drain("cloudrun/service.yaml") < CLOUD_RUN_KILL_AFTER


def test_the_image_serves_on_every_interface_as_a_user_and_drains_on_sigterm() -> None:
    dockerfile = _code(KIT["Dockerfile"])
    assert re.search(r"(?m)^FROM python:3\.11-slim$", dockerfile)
    assert re.search(r'(?m)^ENTRYPOINT \["wsguard", "serve", "--host", "0\.0\.0\.0"\]$', dockerfile)
    (user,) = _numbers(r"(?m)^USER (\d+)$", dockerfile)
    assert user != 0
    assert re.search(r"(?m)^STOPSIGNAL SIGTERM$", dockerfile)


def test_several_instances_run_the_redis_backend() -> None:
    for name in ("compose.yaml", "kubernetes/deployment.yaml", "cloudrun/service.yaml"):
        backend = _setting(KIT[name], "WSGUARD_BACKEND")
        assert backend is not None, name
        assert backend.startswith(("redis://", "redis-sentinel://", "redis-cluster://")), name
        Settings(backend=backend)  # a URL the server accepts
    (replicas,) = _numbers(r"(?m)^  replicas:\s*(\d+)", KIT["kubernetes/deployment.yaml"])
    assert replicas > 1
    (extras,) = re.findall(r"wsguard-\*\.whl\)\[([a-z,]+)\]", KIT["Dockerfile"])
    assert {"redis", "uvloop", "httptools"} <= set(extras.split(","))


def test_nginx_passes_websockets_and_outwaits_the_heartbeat() -> None:
    nginx = _code(KIT["nginx.conf"])
    assert re.search(r"proxy_http_version\s+1\.1;", nginx)
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", nginx)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", nginx)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", nginx)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s", nginx)
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s", nginx)
    assert re.search(r"proxy_buffering\s+off;", nginx)
    upstream = re.search(r"upstream\s+\w+\s*\{([^}]*)\}", nginx)
    assert upstream is not None
    assert not re.search(r"\b(ip_hash|hash|sticky|least_conn)\b", upstream.group(1)), "round robin"
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        (seconds,) = _numbers(rf"{directive}\s+(\d+)s;", nginx)
        assert seconds > _heartbeat("compose.yaml"), directive
    (idle,) = _numbers(r"keepalive_timeout\s+(\d+)s;", nginx)
    keep_alive = _setting(KIT["compose.yaml"], "WSGUARD_KEEP_ALIVE_TIMEOUT")
    assert idle < float(keep_alive or DEFAULTS.keep_alive_timeout)
    trusted = _setting(KIT["compose.yaml"], "WSGUARD_FORWARDED_ALLOW_IPS")
    assert trusted is not None
    assert re.search(rf"ipv4_address:\s*{re.escape(trusted)}\}}", _block(KIT["compose.yaml"], "nginx"))


def test_cloud_run_keeps_websockets_alive() -> None:
    service = KIT["cloudrun/service.yaml"]
    timeouts = re.findall(r"(?m)^( *)timeoutSeconds:\s*(\d+)", service)
    assert int(min(timeouts, key=lambda found: len(found[0]))[1]) == 3600, (
        "the request timeout (the template's, above the probes')"
    )
    assert re.search(r"name:\s*http1\b", service)
    assert not re.search(r"name:\s*h2c\b", service)
    assert re.search(r"containerConcurrency:\s*\d+", service)
    assert re.search(r"autoscaling\.knative\.dev/minScale:\s*\"[1-9]", service)
    assert "run.googleapis.com/sessionAffinity" in service
    assert _setting(service, "WSGUARD_PORT") is None, "PORT, set from containerPort, is enough"
