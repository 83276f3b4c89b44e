"""The generic scenarios catch the leaks people write, each with the right evidence, and pass the
fixed twins: real apps under uvicorn, real sockets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.leaktest.generic.support import APPS, ROOT, SMALL, WS_PATH
from wsguard.leaktest.generic import GenericSizes
from wsguard.leaktest.generic.asgi_app import check_asgi_app
from wsguard.leaktest.report import render_table
from wsguard.leaktest.results import LEAK, PASS, RunReport
from wsguard.probe import RSS, app_count_key

STALL = replace(SMALL, warmup_rounds=0, rounds=1, stall_messages=4000)
"""One stalled-reader round of 16 MB: an unbounded queue holds most of it (the kernel takes a few
MB), over the bound's 4 MB floor; the floor absorbs a first round's set-up."""


def check(app: str, *scenarios: str, sizes: GenericSizes = SMALL) -> RunReport:
    return check_asgi_app(f"{APPS}.{app}", WS_PATH, scenarios=scenarios, sizes=sizes, app_dir=ROOT)


def assert_leaks(report: RunReport, scenario: str, evidence: str) -> None:
    verdicts = {s.name: s for s in report.scenarios}
    found = verdicts[scenario]
    assert found.verdict == LEAK, render_table(report)
    assert any(evidence in leak for leak in found.leaks), render_table(report)


def assert_passes(report: RunReport) -> None:
    assert report.passed, render_table(report)
    assert all(s.verdict == PASS and s.connections > 0 for s in report.scenarios), render_table(report)


def test_connection_manager_keeps_sockets_whose_send_failed() -> None:
    report = check("connection_manager:leaky", "broadcast_disconnect")
    assert_leaks(report, "broadcast_disconnect", app_count_key("active_connections") + " = ")


def test_connection_manager_fixed_passes() -> None:
    assert_passes(check("connection_manager:fixed", "broadcast_disconnect"))


def test_user_dict_keeps_the_closed_socket_of_a_second_connection() -> None:
    report = check("user_dict:leaky", "same_identity")
    assert_leaks(report, "same_identity", app_count_key("sockets") + " = ")


def test_user_dict_fixed_passes() -> None:
    assert_passes(check("user_dict:fixed", "same_identity"))


def test_background_task_fixed_passes_with_a_flat_memory_slope() -> None:
    report = check("background_task:fixed", "connect_close", "churn")
    assert_passes(report)
    churn = report.scenarios[1]
    assert [c.passed for c in churn.slopes] == [True, True], render_table(report)
    assert churn.connections == SMALL.churn_cycles * (SMALL.warmup_rounds + SMALL.churn_rounds)


def test_unbounded_queue_of_a_stalled_reader() -> None:
    report = check("client_queue:leaky", "stalled_reader", sizes=STALL)
    assert_leaks(report, "stalled_reader", f"{RSS} while a reader stalled = ")


@pytest.mark.parametrize("app", ["client_queue:fixed", "connection_manager:fixed"])
def test_stalled_reader_passes_a_bounded_queue_and_a_blocking_send(app: str) -> None:
    assert_passes(check(app, "stalled_reader", sizes=STALL))


def test_channels_consumer_without_group_discard() -> None:
    pytest.importorskip("channels")
    report = check("channels_chat:leaky", "connect_close")
    assert_leaks(report, "connect_close", app_count_key("group_members") + " = ")


def test_channels_consumer_that_leaves_its_group_however_it_ends_passes() -> None:
    pytest.importorskip("channels")
    assert_passes(check("channels_chat:fixed", "broadcast_disconnect"))
