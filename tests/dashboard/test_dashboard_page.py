"""The dashboard in real Chromium: sign-in, the live count following real clients, a user's view,
closing one connection from the page (the client reads 4003), and nothing without an admin token."""

import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from wsguard.processes import ServerProcess

FEED_WAIT_MS = 10_000


@pytest.fixture
def request_cleanup() -> Iterator[list[Callable[[], object]]]:
    """Callables run after the test, pass or fail (the clients' sockets)."""
    cleanups: list[Callable[[], object]] = []
    yield cleanups
    for cleanup in cleanups:
        cleanup()


@pytest.fixture(scope="module")
def server() -> Any:
    with ServerProcess("--connect-rate-per-user", "0", "--log-level", "warning") as running:
        yield running


def _client(server: ServerProcess, token: str, stack: ExitStack) -> tuple[ClientConnection, str]:
    socket = stack.enter_context(
        connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            user_agent_header="dashboard-test/1.0",
            open_timeout=10,
        )
    )
    welcome = json.loads(socket.recv(timeout=10))
    assert welcome["type"] == "welcome", welcome
    return socket, str(welcome["connection_id"])


EXPECTED_REFUSALS = re.compile(r"^Failed to load resource: .* status of 40[13] ")


def _watch_for_errors(page: Any) -> list[str]:
    """Console errors (CSP violations are reported there) and uncaught exceptions of the page,
    except the 401 and 403 answers the tests ask for."""
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not EXPECTED_REFUSALS.match(message.text):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_without_an_admin_token_the_page_shows_only_the_sign_in_and_its_data_is_refused(
    server: ServerProcess, browser: Any, artifacts: Path
) -> None:
    for path in ("/api/admin/overview", "/api/admin/feed", "/api/admin/instances", "/api/admin/users/x"):
        assert server.http.get(path).status_code == 401, path
        user = server.http.get(path, headers=server.auth("someone"))
        assert user.status_code == 403, path
    page = browser.new_page()
    errors = _watch_for_errors(page)
    response = page.goto(f"{server.base_url}/admin")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    page.wait_for_selector("#dev-token:visible")
    assert page.is_visible("#sign-in")
    assert not page.is_visible("#overview")
    page.fill("#token-input", server.token("not-an-admin"))
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#sign-in-error:has-text('admin token required')")
    assert page.is_visible("#sign-in")
    assert not page.is_visible("#overview")
    assert not page.is_visible("#user-view")
    assert page.evaluate("sessionStorage.length") == 0
    page.screenshot(path=str(artifacts / "dashboard-sign-in.png"))
    page.close()
    assert errors == []


def test_live_count_user_view_and_closing_one_connection_from_the_page(
    server: ServerProcess, browser: Any, artifacts: Path, request_cleanup: list[Callable[[], object]]
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = _watch_for_errors(page)
    page.goto(f"{server.base_url}/admin")
    page.click("#dev-token")
    page.wait_for_selector("#overview:visible")
    assert page.evaluate("sessionStorage.getItem('wsguard-admin-token')").startswith("eyJ")

    def shown(value: str) -> None:
        expect(page.locator("#fig-connections")).to_have_text(value, timeout=FEED_WAIT_MS)

    shown("0")
    ann, ben = server.token("dash-ann"), server.token("dash-ben")
    stack = ExitStack()
    request_cleanup.append(stack.close)
    clients = [_client(server, token, stack) for token in [ann] * 5 + [ben] * 3]
    shown("8")
    for socket, _ in clients[3:]:
        socket.close()
    kept = clients[:3]
    shown("3")
    page.wait_for_selector("#top-users button[data-user='dash-ann']")
    assert page.locator("#top-users tbody tr").count() == 1
    assert page.locator("#chart-connections polyline[data-series='connections']").count() == 1
    page.screenshot(path=str(artifacts / "dashboard-overview.png"), full_page=True)

    page.click("#top-users button[data-user='dash-ann']")
    page.wait_for_selector("#user-view:visible")
    expect(page.locator("#connections tbody tr[data-connection]")).to_have_count(3)
    assert "dashboard-test/1.0" in page.inner_text("#connections")
    assert "127.0.0.1" in page.inner_text("#connections")
    page.screenshot(path=str(artifacts / "dashboard-user.png"), full_page=True)

    target_socket, target_id = kept[1]
    page.click(f"#connections button[data-connection='{target_id}']")
    page.wait_for_selector("#confirm[open]")
    assert target_id in page.inner_text("#confirm-text")
    page.screenshot(path=str(artifacts / "dashboard-confirm.png"))
    page.click("#confirm-ok")
    with pytest.raises(ConnectionClosed) as closed:
        target_socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4003
    expect(page.locator("#connections tbody tr[data-connection]")).to_have_count(2)
    for socket, _ in (kept[0], kept[2]):
        socket.ping().wait(5)  # the others stay open
        socket.close()
    page.click("#nav a[href='#/']")
    page.wait_for_selector("#overview:visible")
    shown("0")
    page.close()
    assert errors == []
