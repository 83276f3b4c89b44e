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

CHURN = replace(SMALL, warmup_rounds=1)
"""A warm-up round before the churn's measured ones, so that first-time allocations stay out of
the slope."""


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


def test_connection_manager_fixed_passes_also_while_a_reader_stalls_its_sends() -> None:
    assert_passes(check("connection_manager:fixed", "broadcast_disconnect", "stalled_reader"))


def test_user_dict_keeps_the_closed_socket_of_a_second_connection() -> None:
    report = check("user_dict:leaky", "same_identity")
    assert_leaks(report, "same_identity", app_count_key("sockets") + " = ")


def test_user_dict_fixed_passes() -> None:
    assert_passes(check("user_dict:fixed", "same_identity"))


def test_background_task_fixed_passes_with_a_flat_memory_slope() -> None:
    report = check("background_task:fixed", "connect_close", "churn", sizes=CHURN)
    assert_passes(report)
    churn = report.scenarios[1]
    assert [c.passed for c in churn.slopes] == [True, True], render_table(report)
    assert churn.connections == CHURN.churn_cycles * (CHURN.warmup_rounds + CHURN.churn_rounds)


def test_unbounded_queue_of_a_stalled_reader() -> None:
    report = check("client_queue:leaky", "stalled_reader")
    assert_leaks(report, "stalled_reader", f"{RSS} while a reader stalled = ")


def test_bounded_queue_passes_a_stalled_reader() -> None:
    assert_passes(check("client_queue:fixed", "stalled_reader"))


def test_channels_consumer_without_group_discard() -> None:
    pytest.importorskip("channels")
    report = check("channels_chat:leaky", "connect_close")
    assert_leaks(report, "connect_close", app_count_key("group_members") + " = ")


def test_channels_consumer_that_leaves_its_group_however_it_ends_passes() -> None:
    pytest.importorskip("channels")
    assert_passes(check("channels_chat:fixed", "broadcast_disconnect"))
