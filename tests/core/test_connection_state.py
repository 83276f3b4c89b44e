"""A connection's decisions, without sockets: the queue limit, the inbound limits, and what a
delivery, a replay and an unsubscribe send."""

import json
from dataclasses import MISSING, fields
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wsguard import close
from wsguard.core.connection import RATE_LIMITED_FRAME, ConnectionLimits, ConnectionState
from wsguard.core.thread_log import Recovery, Retained
from wsguard.settings import Settings


def limits(**changes: Any) -> ConnectionLimits:
    values: dict[str, Any] = {
        "queue_limit_bytes": 1000,
        "write_timeout": 10.0,
        "close_timeout": 1.0,
        "max_message_bytes": 100,
        "message_rate": 0.0,
        "max_subscriptions": 3,
    }
    values.update(changes)
    return ConnectionLimits(**values)


def event(offset: int) -> str:
    return f'{{"type":"event","offset":{offset}}}'


def recovery(*offsets: int, epoch: str = "e1", last: int | None = None, recovered: bool = True) -> Recovery:
    retained = tuple(Retained(offset, 0.0, event(offset)) for offset in offsets)
    return Recovery(epoch, last if last is not None else max(offsets, default=0), recovered, retained)


def subscribed(
    state: ConnectionState, thread_id: str, history: Recovery, ref: str | None = None
) -> list[str]:
    """Subscribe with nothing arriving meanwhile: the frames sent, ``subscribed`` included."""
    state.begin_subscription(thread_id)
    sending = state.replay(thread_id, history, ref)
    assert sending is not None
    return sending + state.end_replay(thread_id)


# Limits


def test_limits_are_the_settings_own() -> None:
    settings = Settings(
        queue_limit_bytes=12345,
        write_timeout=2.5,
        close_timeout=0.5,
        max_message_bytes=777,
        message_rate_per_connection=3.0,
        max_subscriptions_per_connection=9,
    )
    assert ConnectionLimits.from_settings(settings) == ConnectionLimits(12345, 2.5, 0.5, 777, 3.0, 9)


def test_limits_have_no_default_of_their_own() -> None:
    """Every default is the setting's: a limit left out is an error, never a second default."""
    assert all(f.default is MISSING and f.default_factory is MISSING for f in fields(ConnectionLimits))


# The outbound queue


def test_a_frame_is_admitted_up_to_the_queue_limit() -> None:
    state = ConnectionState(limits(queue_limit_bytes=10))
    assert state.admit("12345", 5) is None
    assert state.admit("123456", 5) is close.SLOW_CONSUMER
    assert state.admit("1234567890", 0) is None
    assert state.admit("12345678901", 0) is close.SLOW_CONSUMER


def test_the_queue_limit_counts_utf8_bytes() -> None:
    state = ConnectionState(limits(queue_limit_bytes=4))
    assert state.admit("éé", 0) is None
    assert state.admit("ééa", 0) is close.SLOW_CONSUMER


# Inbound frames


def test_a_frame_over_the_message_limit_closes_with_1009() -> None:
    state = ConnectionState(limits(max_message_bytes=4))
    assert state.receive("abcd", 0.0) is None
    assert state.receive("abcde", 0.0) is close.TOO_BIG
    assert state.receive("ééé", 0.0) is close.TOO_BIG


def test_without_a_rate_every_frame_is_handled() -> None:
    state = ConnectionState(limits(message_rate=0.0))
    assert all(state.receive("{}", 0.0) is None for _ in range(1000))


def test_past_the_rate_frames_are_refused_then_the_connection_closes() -> None:
    state = ConnectionState(limits(message_rate=2.0))
    assert [state.receive("{}", 0.0) for _ in range(4)] == [None] * 4
    refused = [state.receive("{}", 0.0) for _ in range(4)]
    assert refused == [RATE_LIMITED_FRAME] * 4
    assert json.loads(RATE_LIMITED_FRAME)["code"] == "rate_limited"
    assert state.receive("{}", 0.0) is close.POLICY_VIOLATION


def test_a_handled_frame_forgives_the_refusals_before_it() -> None:
    state = ConnectionState(limits(message_rate=1.0))
    assert [state.receive("{}", 0.0) for _ in range(2)] == [None, None]
    assert [state.receive("{}", 0.0) for _ in range(2)] == [RATE_LIMITED_FRAME] * 2
    assert state.receive("{}", 1.0) is None
    assert [state.receive("{}", 1.0) for _ in range(2)] == [RATE_LIMITED_FRAME] * 2
    assert state.receive("{}", 1.0) is close.POLICY_VIOLATION


# Subscriptions


def test_the_subscription_cap_counts_threads_being_fetched() -> None:
    state = ConnectionState(limits(max_subscriptions=2))
    assert state.may_subscribe("a")
    subscribed(state, "a", recovery())
    state.begin_subscription("b")
    assert not state.may_subscribe("c")
    assert state.may_subscribe("a")
    assert state.may_subscribe("b")
    state.end_subscription("b")
    assert state.may_subscribe("c")


def test_no_subscription_at_all_under_a_cap_of_zero() -> None:
    assert not ConnectionState(limits(max_subscriptions=0)).may_subscribe("a")


def test_an_idle_connection_holds_no_thread() -> None:
    state = ConnectionState(limits())
    assert dict(state.subscriptions) == {}
    assert state.pending_threads == ()
    assert state.threads() == ()
    assert state.thread_event(1, event(1), "a") is None
    assert state.end_replay("a") == []
    state.end_subscription("a")
    state.restart_thread("a")
    assert state.threads() == ()


# Delivery


def test_live_events_are_sent_once_in_offset_order() -> None:
    state = ConnectionState(limits())
    subscribed(state, "a", recovery())
    sent = [state.thread_event(offset, event(offset), "a") for offset in (1, 2, 2, 1, 4, 3, 5)]
    assert sent == [event(1), event(2), None, None, event(4), None, event(5)]
    assert state.subscriptions == {"a": 5}


def test_an_event_without_an_offset_is_always_sent() -> None:
    state = ConnectionState(limits())
    subscribed(state, "a", recovery(1, 2))
    assert state.thread_event(None, "x", "a") == "x"
    assert state.thread_event(None, "x", "a") == "x"
    assert state.subscriptions == {"a": 2}


def test_an_event_of_another_thread_is_not_sent() -> None:
    state = ConnectionState(limits())
    subscribed(state, "a", recovery())
    assert state.thread_event(1, event(1), "b") is None


# Replay


def test_the_replay_ends_with_subscribed() -> None:
    state = ConnectionState(limits())
    state.begin_subscription("a")
    sending = state.replay("a", recovery(3, 4, last=4, recovered=False, epoch="e9"), "r1")
    assert sending is not None
    assert sending[:2] == [event(3), event(4)]
    assert json.loads(sending[2]) == {
        "type": "subscribed",
        "thread_id": "a",
        "epoch": "e9",
        "offset": 4,
        "recovered": False,
        "replayed": 2,
        "ref": "r1",
    }
    assert state.subscriptions == {"a": 4}
    assert state.pending_threads == ("a",)
    assert state.end_replay("a") == []
    assert not state.pending_threads


def test_events_during_the_replay_are_held_and_sent_after_it_once() -> None:
    state = ConnectionState(limits())
    state.begin_subscription("a")
    assert state.pending_threads == ("a",)
    assert state.thread_event(3, event(3), "a") is None
    assert state.thread_event(4, event(4), "a") is None
    sending = state.replay("a", recovery(1, 2, 3))
    assert sending is not None
    assert sending[:-1] == [event(1), event(2), event(3)]
    assert json.loads(sending[-1])["replayed"] == 3
    assert state.end_replay("a") == [event(4)]
    assert not state.pending_threads
    assert state.thread_event(5, event(5), "a") == event(5)


def test_held_events_past_the_queue_limit_close_with_4008() -> None:
    frame = event(1)
    state = ConnectionState(limits(queue_limit_bytes=2 * len(frame)))
    state.begin_subscription("a")
    assert state.thread_event(1, frame, "a") is None
    assert state.thread_event(2, event(2), "a") is None
    assert state.thread_event(3, event(3), "a") is close.SLOW_CONSUMER


def test_held_bytes_are_given_back_when_the_replay_ends() -> None:
    frame = event(1)
    state = ConnectionState(limits(queue_limit_bytes=2 * len(frame)))
    for _ in range(3):
        state.begin_subscription("a")
        assert state.thread_event(1, event(1), "a") is None
        assert state.thread_event(2, event(2), "a") is None
        state.replay("a", recovery())
        state.end_replay("a")
        state.end_subscription("a")
    state.begin_subscription("b")
    assert state.thread_event(1, event(1), "b") is None
    assert state.thread_event(2, event(2), "b") is None


def test_nothing_is_sent_for_a_subscription_ended_while_fetching() -> None:
    state = ConnectionState(limits())
    state.begin_subscription("a")
    state.thread_event(1, event(1), "a")
    state.end_subscription("a")
    assert state.replay("a", recovery(1)) is None
    assert state.end_replay("a") == []
    assert state.threads() == ()


def test_a_resubscribe_never_repeats_what_was_delivered() -> None:
    state = ConnectionState(limits())
    subscribed(state, "a", recovery(1, 2))
    assert state.thread_event(3, event(3), "a") == event(3)
    state.end_subscription("a")
    assert state.subscriptions == {}
    sending = subscribed(state, "a", recovery(1, 2, 3, 4))
    assert sending[:-1] == [event(4)]
    assert json.loads(sending[-1])["replayed"] == 1


def test_a_subscribe_while_subscribed_replays_only_what_was_missed() -> None:
    state = ConnectionState(limits())
    subscribed(state, "a", recovery(1))
    state.begin_subscription("a")
    assert state.threads() == ("a", "a")
    assert state.thread_event(2, event(2), "a") is None
    sending = state.replay("a", recovery(1, 2))
    assert sending is not None
    assert sending[:-1] == [event(2)]
    assert state.end_replay("a") == []


def test_only_the_last_unsubscribed_threads_are_remembered() -> None:
    state = ConnectionState(limits(max_subscriptions=2))
    for thread_id in ("a", "b", "c"):
        subscribed(state, thread_id, recovery(1, 2))
        state.end_subscription(thread_id)
    assert subscribed(state, "a", recovery(1, 2))[:-1] == [event(1), event(2)]
    assert subscribed(state, "c", recovery(1, 2))[:-1] == []


def test_an_unsubscribe_drops_the_held_events() -> None:
    state = ConnectionState(limits())
    state.begin_subscription("a")
    state.thread_event(1, event(1), "a")
    state.end_subscription("a")
    assert subscribed(state, "a", recovery())[:-1] == []


def test_a_new_epoch_delivers_from_offset_1_again() -> None:
    state = ConnectionState(limits())
    subscribed(state, "a", recovery(1, 2, 3))
    assert state.thread_event(1, event(1), "a") is None
    state.restart_thread("a")
    assert state.thread_event(1, event(1), "a") == event(1)
    state.restart_thread("b")
    assert "b" not in state.subscriptions


@given(
    floor=st.integers(0, 6),
    retained_from=st.integers(1, 12),
    published=st.integers(0, 12),
    during=st.lists(st.integers(1, 12), max_size=12),
    after=st.lists(st.integers(1, 14), max_size=12),
)
def test_every_event_is_sent_at_most_once_and_in_order(
    floor: int, retained_from: int, published: int, during: list[int], after: list[int]
) -> None:
    """Whatever the history holds and however live events (repeated, out of order) arrive
    during and after the replay, a connection gets each offset past its floor at most once,
    in increasing order; and all of them when the history and the live events leave no gap."""
    state = ConnectionState(limits(queue_limit_bytes=10**6))
    if floor:
        subscribed(state, "t", recovery(*range(1, floor + 1)))
        state.end_subscription("t")
    state.begin_subscription("t")
    for offset in during:
        assert state.thread_event(offset, event(offset), "t") is None
    history = recovery(*range(retained_from, published + 1), last=published)
    sending = state.replay("t", history)
    assert sending is not None
    sent = sending[:-1] + state.end_replay("t")
    for offset in after:
        live = state.thread_event(offset, event(offset), "t")
        assert not isinstance(live, close.Close)
        if live is not None:
            sent.append(live)
    offsets = [json.loads(frame)["offset"] for frame in sent]
    assert offsets == sorted(set(offsets))
    assert all(offset > floor for offset in offsets)
    if retained_from <= floor + 1:
        assert offsets[: max(0, published - floor)] == list(range(floor + 1, published + 1))
