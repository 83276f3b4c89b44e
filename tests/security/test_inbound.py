"""The inbound path under hostile input, over live connections: every input gets the documented
``error`` frame or close code, nothing else is disturbed, and nothing leaks."""

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from wsguard.processes import ServerProcess, StartServer, eventually_async
from wsguard.processes.clients import Frame, open_socket, receive, send

ERROR_CODES = {"bad_json", "bad_request", "unknown_type", "rate_limited", "unauthorized"}
REPLIES = {"pong", "subscribed", "unsubscribed", "refreshed", "event"}
CLOSE_CODES = {1003: "unsupported_data", 1007: None, 1009: None}


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ServerProcess]:
    flags = ("--message-rate-per-connection", "0", "--connect-rate-per-user", "0")
    with ServerProcess(*flags, "--max-message-bytes", "4096", "--demo-step-delay", "0") as server:
        yield server


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
commands = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "unsubscribe", "ping", "refresh", "message", "nope"])},
    optional={
        "thread_id": json_values | st.from_regex(r"[A-Za-z0-9._:-]{1,12}", fullmatch=True),
        "since": json_values | st.fixed_dictionaries({"epoch": json_values, "offset": json_values}),
        "ref": json_values,
        "token": json_values,
        "text": json_values,
    },
)
inputs = st.one_of(
    st.text(max_size=200).map(lambda t: ("text", t)),
    json_values.map(lambda v: ("text", json.dumps(v))),
    commands.map(lambda c: ("text", json.dumps(c))),
    st.integers(1, 20_000).map(lambda depth: ("text", "[" * depth + "]" * depth)),
    st.integers(4_000, 6_000).map(lambda digits: ("text", "1" * digits)),
    st.binary(max_size=64).map(lambda b: ("binary", b)),
    st.binary(min_size=1, max_size=16).map(lambda b: ("invalid-utf8", b"\xff" + b)),
    st.integers(4_097, 9_000).map(lambda size: ("text", "x" * size)),
)


async def _exchange(server: ServerProcess, token: str, kind: str, payload: Any) -> None:
    socket, _ = await open_socket(server.ws_url, token)
    try:
        if kind == "binary":
            await socket.send(payload)
        elif kind == "invalid-utf8":
            await socket.send(payload, text=True)
        else:
            await socket.send(payload)
        await send(socket, type="ping", ref="probe")
        while True:
            frame = await receive(socket)
            if frame == {"type": "pong", "ref": "probe"}:
                break
            if frame["type"] == "error":
                assert frame["code"] in ERROR_CODES, frame
            else:
                assert frame["type"] in REPLIES, frame
    except ConnectionClosed:
        assert socket.close_code in CLOSE_CODES, (kind, socket.close_code, socket.close_reason)
        expected_reason = CLOSE_CODES[socket.close_code]
        if expected_reason:
            assert socket.close_reason == expected_reason
    finally:
        await socket.close()


def test_fuzzed_frames_get_documented_answers_and_leak_nothing(fuzz_server: ServerProcess) -> None:
    token = fuzz_server.token("fuzzer")
    bystander_token = fuzz_server.token("bystander")
    examples = 0

    async def open_bystander() -> ClientConnection:
        socket, _ = await open_socket(fuzz_server.ws_url, bystander_token, ping_interval=None)
        return socket

    loop = asyncio.new_event_loop()
    bystander = loop.run_until_complete(open_bystander())

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(inputs)
    def check(case: tuple[str, Any]) -> None:
        nonlocal examples
        examples += 1
        loop.run_until_complete(_exchange(fuzz_server, token, *case))

    try:
        check()

        async def bystander_alive() -> dict[str, Any]:
            await send(bystander, type="ping", ref="still-here")
            return await receive(bystander)

        assert loop.run_until_complete(bystander_alive()) == {"type": "pong", "ref": "still-here"}
        loop.run_until_complete(bystander.close())
    finally:
        loop.close()
    assert examples >= 300
    metrics = fuzz_server.wait_idle(timeout=5.0)
    assert metrics["wsguard_sweeper_repairs_total"] == 0
    assert not any(
        k.startswith("wsguard_connections_closed_total") and "internal_error" in k for k in metrics
    )


def test_binary_oversized_and_invalid_frames_close_with_their_codes(fuzz_server: ServerProcess) -> None:
    async def close_code(payload: str | bytes, text: bool | None = None) -> tuple[int | None, str | None]:
        socket, _ = await open_socket(fuzz_server.ws_url, fuzz_server.token("closer"))
        await socket.send(payload, text=text)
        await asyncio.wait_for(socket.wait_closed(), 5)
        return socket.close_code, socket.close_reason

    assert asyncio.run(close_code(b"\x00\x01")) == (1003, "unsupported_data")
    assert asyncio.run(close_code("y" * 5000))[0] == 1009
    assert asyncio.run(close_code(b"\xff\xfe", text=True))[0] == 1007
    metrics = fuzz_server.wait_idle(timeout=5.0)
    assert metrics['wsguard_connections_closed_total{reason="unsupported_data"}'] >= 1
    assert metrics['wsguard_connections_closed_total{reason="too_big"}'] >= 1


RATE = 5
"""Inbound frames per second in the rate-limit tests; the burst is twice that."""
BURST = 2 * RATE


def test_inbound_rate_limit_answers_rate_limited_and_keeps_the_connection(
    start_server: StartServer,
) -> None:
    """15 pings at once: the burst is answered, the rest (less what the bucket refilled while
    they were read) get ``rate_limited``, and the connection stays usable.

    How many tokens came back depends on how long the server took, which a loaded machine
    stretches: the count is bounded by the time the exchange took, and an exchange slow enough
    to leave no refusal at all is repeated rather than accepted."""
    server = start_server("--message-rate-per-connection", str(RATE))
    token = server.token("eager-typist")

    async def over_the_burst() -> tuple[list[Frame], float]:
        socket, _ = await open_socket(server.ws_url, token)
        started = time.monotonic()
        for n in range(15):
            await send(socket, type="ping", ref=n)
        answers = [await receive(socket) for _ in range(15)]
        elapsed = time.monotonic() - started
        assert socket.close_code is None

        async def answer_after_refill() -> Frame:
            await send(socket, type="ping", ref="later")
            return await receive(socket)

        later = await eventually_async(
            answer_after_refill,
            lambda frame: frame["type"] == "pong",
            timeout=5.0,
            interval=1.5 / RATE,
            what="a pong once a token is back",
        )
        assert later == {"type": "pong", "ref": "later"}
        await socket.close()
        return answers, elapsed

    for _attempt in range(5):
        answers, elapsed = asyncio.run(over_the_burst())
        assert answers[:BURST] == [{"type": "pong", "ref": n} for n in range(BURST)], answers
        late = answers[BURST:]
        assert all(a.get("ref", n) == n for n, a in enumerate(late, BURST)), late
        assert all(a["type"] == "pong" or a.get("code") == "rate_limited" for a in late), late
        refilled = sum(a["type"] == "pong" for a in late)
        assert refilled <= RATE * elapsed + 0.01, f"{refilled} extra pongs in {elapsed:.3f}s"
        if refilled < len(late):
            break
    else:
        raise AssertionError(f"no ping was ever refused over the burst; last answers {answers}")


def test_sustained_inbound_abuse_closes_with_1008(start_server: StartServer) -> None:
    """The flooder reads what it is sent, as every real client does: a client that stops
    reading has its socket paused by websockets' flow control (16 frames), never reads the
    close frame, and would wait for a close it cannot see."""
    server = start_server("--message-rate-per-connection", str(RATE))

    async def flood() -> tuple[int | None, str | None, int, list[Frame]]:
        socket, _ = await open_socket(server.ws_url, server.token("flooder"))
        received: list[Frame] = []

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for text in socket:
                    received.append(json.loads(text))

        reader = asyncio.create_task(read())
        sent = 0
        with contextlib.suppress(ConnectionClosed):
            while sent < 2000 and not reader.done():
                await send(socket, type="ping")
                sent += 1
                await asyncio.sleep(0)
        await asyncio.wait_for(reader, 15)
        return socket.close_code, socket.close_reason, sent, received

    code, reason, sent, received = asyncio.run(flood())
    assert (code, reason) == (1008, "policy_violation"), f"closed with {code} after {sent} frames"
    assert sent < 2000, "the flood should have been cut off before it ended"
    assert all(f["type"] == "pong" or f.get("code") == "rate_limited" for f in received), received
    assert server.wait_idle(timeout=5.0)['wsguard_connections_closed_total{reason="policy_violation"}'] == 1
