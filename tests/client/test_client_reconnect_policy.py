"""The reconnect rules of docs/protocol.md section 6, decided without sockets."""

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from wsguard.client import ReconnectPolicy, parse_retry_after

STOP_CODES = [1000, 1002, 1003, 1007, 1008, 1009, 4001, 4002, 4003, 4029]
BACKOFF_CODES = [1006, 1011, 4008]


def policy(**kwargs: float) -> ReconnectPolicy:
    return ReconnectPolicy(rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", STOP_CODES)
def test_codes_the_protocol_says_not_to_reconnect_after_stop(code: int) -> None:
    decision = policy().after_close(code)
    assert not decision.reconnect
    assert str(code) in decision.why


@pytest.mark.parametrize("code", BACKOFF_CODES)
def test_transient_codes_reconnect_with_growing_bounded_delays(code: int) -> None:
    rules = policy(base_delay=0.1, factor=2.0, max_delay=1.0)
    delays = [rules.after_close(code) for _ in range(8)]
    assert all(decision.reconnect for decision in delays)
    for attempt, decision in enumerate(delays):
        ceiling = min(1.0, 0.1 * 2**attempt)
        assert ceiling / 2 <= decision.delay <= ceiling, (attempt, decision)
    assert delays[-1].delay >= 0.5, "the backoff should have reached its cap"


def test_replaced_stops_so_two_resuming_clients_do_not_evict_each_other() -> None:
    decision = policy().after_close(4002)
    assert not decision.reconnect
    assert "replaced" in decision.why


def test_going_away_reconnects_within_five_seconds_with_spread() -> None:
    rules = policy()
    delays = [rules.after_close(1001).delay for _ in range(200)]
    assert all(0 <= delay <= 5.0 for delay in delays)
    assert max(delays) - min(delays) > 2.0, "shutdown reconnects must be spread out"
    assert rules.attempts == 0, "a shutdown is not a failure that grows the backoff"


def test_token_expired_reconnects_only_with_fresh_credentials() -> None:
    assert not policy().after_close(4401).reconnect
    assert not policy().after_close(4401, fresh_credentials=False).reconnect
    assert policy().after_close(4401, fresh_credentials=True).reconnect


def test_unknown_application_code_stops() -> None:
    assert not policy().after_close(4999).reconnect


def test_successful_connection_resets_the_backoff() -> None:
    rules = policy(base_delay=0.1, max_delay=10.0)
    for _ in range(5):
        rules.after_close(1006)
    assert rules.after_close(1006).delay >= 1.6
    rules.connected()
    assert rules.after_close(1006).delay <= 0.1


def test_max_attempts_gives_up_and_says_so() -> None:
    rules = policy(max_attempts=3)
    assert [rules.after_network_error().reconnect for _ in range(4)] == [True, True, True, False]
    assert "gave up after 3 attempts" in rules.after_close(1006).why


def test_jitter_spreads_clients_apart() -> None:
    delays = {ReconnectPolicy(rng=random.Random(seed)).after_close(1006).delay for seed in range(50)}
    assert len(delays) == 50


@pytest.mark.parametrize("status", [429, 503])
def test_refusals_with_retry_after_wait_at_least_that_long_plus_jitter(status: int) -> None:
    rules = policy(base_delay=0.1, max_delay=10.0)
    delays = [rules.after_refusal(status, retry_after=3.0).delay for _ in range(50)]
    assert all(3.0 <= delay <= 4.5 for delay in delays)
    assert len(set(delays)) > 1, "Retry-After alone would make every client return at once"


def test_refusal_without_retry_after_backs_off() -> None:
    decision = policy(base_delay=0.2).after_refusal(503)
    assert decision.reconnect
    assert 0.1 <= decision.delay <= 0.2


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_refusals_that_would_only_repeat_stop(status: int) -> None:
    decision = policy().after_refusal(status, retry_after=1.0)
    assert not decision.reconnect
    assert str(status) in decision.why


def test_parse_retry_after_seconds_dates_and_garbage() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30.0)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        ReconnectPolicy(base_delay=5.0, max_delay=1.0)
