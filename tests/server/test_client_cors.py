"""A front end on another origin imports the browser client: ``/client/*`` answers with CORS
headers for the origins a WebSocket upgrade would accept, and for no other."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.chromium import MISSING, launch
from wsguard.processes import ServerProcess, free_port

APP = "https://app.example.com"
OTHER = "https://evil.example.net"
SECRET = ("--jwt-secret", "s" * 32)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(*SECRET, "--allowed-origin", APP, dev=False) as running:
        yield running


@pytest.mark.parametrize(
    "name", ["wsguard.js", "engine.js", "history.js", "policy.js", "tracker.js", "wsguard.d.ts"]
)
def test_an_allowed_origin_gets_the_header_on_every_client_file(server: ServerProcess, name: str) -> None:
    response = server.http.get(f"/client/{name}", headers={"Origin": APP})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in response.headers
    etag = response.headers["etag"]
    again = server.http.get(f"/client/{name}", headers={"Origin": APP, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["access-control-allow-origin"] == APP


def test_another_origin_gets_no_header(server: ServerProcess) -> None:
    for headers in ({"Origin": OTHER}, {}):
        response = server.http.get("/client/wsguard.js", headers=headers)
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["vary"] == "Origin"
    own = server.http.get("/client/wsguard.js", headers={"Origin": server.base_url})
    assert own.headers["access-control-allow-origin"] == server.base_url


def test_a_preflight_is_answered_for_the_allowed_origin_only(server: ServerProcess) -> None:
    asked = {"Access-Control-Request-Method": "GET"}
    allowed = server.http.options("/client/wsguard.js", headers={"Origin": APP, **asked})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == APP
    assert "GET" in allowed.headers["access-control-allow-methods"]
    refused = server.http.options("/client/wsguard.js", headers={"Origin": OTHER, **asked})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


def test_dev_allows_any_origin_by_name_never_a_wildcard() -> None:
    with ServerProcess() as dev:
        response = dev.http.get("/client/wsguard.js", headers={"Origin": OTHER})
        assert response.headers["access-control-allow-origin"] == OTHER
        assert "access-control-allow-credentials" not in response.headers


PAGE = """<script type="module">
import { connect } from "%s/client/wsguard.js";
window.imported = typeof connect;
</script>"""


@pytest.mark.skipif(MISSING is not None, reason=f"Chromium: {MISSING}")
def test_chromium_imports_the_client_from_another_origin_only_when_allowed() -> None:
    allowed, refused = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    with ServerProcess(*SECRET, "--allowed-origin", allowed, dev=False) as server, launch() as chromium:
        context = chromium.new_context()
        page_body = PAGE % server.base_url
        context.route("**/page.html", lambda route: route.fulfill(body=page_body, content_type="text/html"))
        results: dict[str, Any] = {}
        for origin in (allowed, refused):
            page = context.new_page()
            page.goto(f"{origin}/page.html")
            page.wait_for_load_state("networkidle")
            results[origin] = page.evaluate("() => window.imported ?? null")
        context.close()
    assert results == {allowed: "function", refused: None}
