"""Per-thread positions and duplicate dropping, without sockets."""

from hypothesis import given
from hypothesis import strategies as st

from wsguard.client import Event, Position, RecoveryFailed, Subscribed, ThreadTracker


def event(offset: int | None, *, thread: str | None = "t1", epoch: str | None = "e1") -> Event:
    return Event("agent_thinking", thread, "r1", "q1", offset, epoch, {"n": offset}, None)


def subscribed(offset: int, *, recovered: bool, epoch: str = "e1", thread: str = "t1") -> Subscribed:
    return Subscribed(thread, epoch, offset, recovered, 0)


def test_first_subscription_has_no_since_and_later_ones_resume_from_the_last_event() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1")
    assert tracker.subscribe_command("t1") == {"type": "subscribe", "thread_id": "t1"}
    assert tracker.on_subscribed(subscribed(4, recovered=False)) is None
    for offset in (5, 6, 7):
        assert tracker.accept(event(offset))
    assert tracker.resubscribe_commands() == [
        {"type": "subscribe", "thread_id": "t1", "since": {"epoch": "e1", "offset": 7}}
    ]


def test_duplicates_are_dropped_and_counted() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1")
    delivered = [offset for offset in (1, 2, 3, 2, 3, 4, 1, 5) if tracker.accept(event(offset))]
    assert delivered == [1, 2, 3, 4, 5]
    assert tracker.duplicates_dropped == 3


def test_threads_are_tracked_apart() -> None:
    tracker = ThreadTracker()
    assert tracker.accept(event(1, thread="a"))
    assert tracker.accept(event(1, thread="b"))
    assert not tracker.accept(event(1, thread="a"))
    assert tracker.position("a") == Position("e1", 1)


def test_user_level_events_always_pass() -> None:
    tracker = ThreadTracker()
    first = event(None, thread=None, epoch=None)
    assert tracker.accept(first)
    assert tracker.accept(first)


def test_a_new_epoch_restarts_the_numbering() -> None:
    tracker = ThreadTracker()
    assert tracker.accept(event(9, epoch="e1"))
    assert tracker.accept(event(1, epoch="e2"))
    assert tracker.position("t1") == Position("e2", 1)


def test_failed_recovery_is_reported_and_continues_from_the_server_position() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1")
    tracker.accept(event(3))
    tracker.subscribe_command("t1")
    notice = tracker.on_subscribed(subscribed(40, recovered=False, epoch="e2"))
    assert notice == RecoveryFailed("t1", Position("e1", 3), Position("e2", 40))
    assert tracker.position("t1") == Position("e2", 40)
    assert not tracker.accept(event(40, epoch="e2"))
    assert tracker.accept(event(41, epoch="e2"))


def test_failed_recovery_in_the_same_epoch_skips_what_expired() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1")
    tracker.accept(event(3))
    tracker.subscribe_command("t1")
    notice = tracker.on_subscribed(subscribed(2000, recovered=False))
    assert notice is not None
    assert tracker.resubscribe_commands()[0]["since"] == {"epoch": "e1", "offset": 2000}


def test_successful_recovery_is_silent_and_keeps_the_replayed_position() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1")
    tracker.accept(event(3))
    tracker.subscribe_command("t1")
    tracker.accept(event(4))
    assert tracker.on_subscribed(subscribed(6, recovered=True)) is None
    assert tracker.position("t1") == Position("e1", 4)
    assert tracker.accept(event(5)), "an event the replay had not reached yet must still pass"


def test_not_recovered_without_since_is_no_failure() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1")
    tracker.subscribe_command("t1")
    assert tracker.on_subscribed(subscribed(10, recovered=False)) is None


def test_a_recovery_is_judged_only_once() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1", since=Position("e1", 2))
    tracker.subscribe_command("t1")
    assert tracker.on_subscribed(subscribed(9, recovered=False)) is not None
    assert tracker.on_subscribed(subscribed(9, recovered=False)) is None


def test_a_position_kept_elsewhere_seeds_the_first_since() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("t1", since=Position("e1", 12))
    assert tracker.subscribe_command("t1")["since"] == {"epoch": "e1", "offset": 12}
    assert not tracker.accept(event(12))


def test_unsubscribed_threads_are_not_resubscribed() -> None:
    tracker = ThreadTracker()
    tracker.subscribe("a")
    tracker.subscribe("b")
    tracker.unsubscribe("a")
    assert [command["thread_id"] for command in tracker.resubscribe_commands()] == ["b"]
    assert tracker.subscriptions == ["b"]
    assert tracker.position("a") is None


@given(
    total=st.integers(min_value=1, max_value=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=8),
    overlaps=st.lists(st.integers(min_value=0, max_value=5), min_size=8, max_size=8),
)
def test_overlapping_replays_across_connections_deliver_each_event_once_in_order(
    total: int, cuts: list[int], overlaps: list[int]
) -> None:
    """Each connection ends at some cut; the next replays from ``since`` minus some overlap."""
    tracker = ThreadTracker()
    tracker.subscribe("t1")
    published = list(range(1, total + 1))
    seen: list[int] = []
    start = 0
    for index, cut in enumerate([*sorted(c for c in cuts if c <= total), total]):
        since = tracker.position("t1")
        resume_from = 0 if since is None else since.offset
        start = max(0, resume_from - overlaps[index % len(overlaps)])
        for offset in published[start:cut]:
            if tracker.accept(event(offset)):
                seen.append(offset)
    assert seen == published
