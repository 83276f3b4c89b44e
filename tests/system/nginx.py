"""Debian's nginx running the deploy kit's ``deploy/nginx.conf`` in front of local instances.

The kit's file is used as it is, but for what only a deployment knows: the upstream servers
(the instances' loopback ports instead of compose's host names), the listening address, and
where nginx writes its pid, logs and temporary files (a private directory).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

import httpx

from wsguard.processes.managed import Managed
from wsguard.processes.process import end_process, free_port

KIT_CONF = Path(__file__).parents[2] / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def render(conf: str, upstreams: list[int], port: int, prefix: Path) -> str:
    """The kit's configuration with local upstreams, a loopback listener and private paths."""
    kit_servers = re.findall(r"(?m)^\s*server\s+[\w.-]+:\d+(.*);\n", conf)
    assert kit_servers, "deploy/nginx.conf has no upstream server lines"
    servers = "".join(f"        server 127.0.0.1:{upstream}{kit_servers[0]};\n" for upstream in upstreams)
    conf = re.sub(r"(?m)^\s*server\s+[\w.-]+:\d+.*;\n", "", conf)
    conf = re.sub(r"(?m)^(\s*upstream\s+\w+\s*\{\n)", lambda match: match.group(1) + servers, conf, count=1)
    conf, replaced = re.subn(r"(?m)^(\s*)listen\s+80;", rf"\1listen 127.0.0.1:{port};", conf)
    assert replaced == 1, "deploy/nginx.conf does not listen on port 80"
    private = "".join(
        f"    {directive} {prefix / name};\n"
        for directive, name in (
            ("access_log", "access.log"),
            ("client_body_temp_path", "body"),
            ("proxy_temp_path", "proxy"),
            ("fastcgi_temp_path", "fastcgi"),
            ("uwsgi_temp_path", "uwsgi"),
            ("scgi_temp_path", "scgi"),
        )
    )
    conf, replaced = re.subn(r"(?m)^http\s*\{\n", "http {\n" + private, conf, count=1)
    assert replaced == 1, "deploy/nginx.conf has no http block"
    return conf


class Nginx(Managed):
    """nginx on a free loopback port, proxying to ``upstreams``; stopped on exit."""

    def __init__(self, upstreams: list[int], directory: Path) -> None:
        assert NGINX is not None, "nginx is not installed"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.directory = directory
        self.conf = directory / "nginx.conf"
        self.conf.write_text(render(KIT_CONF.read_text(), upstreams, self.port, directory))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        globals_ = (
            f"daemon off; pid {self.directory / 'nginx.pid'}; error_log {self.directory / 'error.log'};"
        )
        argv = [str(NGINX), "-p", str(self.directory), "-c", str(self.conf), "-g", globals_]
        self.process = subprocess.Popen(argv)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.errors()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"nginx not ready within 15 s: {self.errors()}")

    def errors(self) -> str:
        log = self.directory / "error.log"
        return log.read_text()[-2000:] if log.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process, timeout=10)
