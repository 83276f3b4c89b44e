"""Offsets, retention by count and age, and the recovery decision."""

from wsguard.core.thread_log import ThreadLogs

KEY = ("alice", "t1")


def filled(count: int, *, max_events: int = 100, max_age: float = 60.0) -> ThreadLogs:
    logs = ThreadLogs("epoch-1", max_events, max_age)
    for _ in range(count):
        offset = logs.next_offset(KEY)
        logs.append(KEY, offset, f"frame-{offset}", now=float(offset))
    return logs


def test_offsets_start_at_one_and_grow_by_one() -> None:
    logs = filled(3)
    assert logs.last_offset(KEY) == 3
    assert logs.next_offset(KEY) == 4
    assert logs.next_offset(("bob", "t1")) == 1


def test_replays_everything_after_since_in_order() -> None:
    recovery = filled(5).recover(KEY, "epoch-1", 2, now=6.0)
    assert recovery.recovered
    assert [r.offset for r in recovery.frames] == [3, 4, 5]
    assert recovery.last_offset == 5


def test_nothing_missed_is_a_recovery_with_nothing_to_send() -> None:
    recovery = filled(5).recover(KEY, "epoch-1", 5, now=6.0)
    assert recovery.recovered
    assert recovery.frames == ()


def test_another_epoch_is_not_recovered() -> None:
    recovery = filled(5).recover(KEY, "epoch-0", 2, now=6.0)
    assert not recovery.recovered
    assert recovery.frames == ()


def test_a_gap_past_the_count_bound_is_not_recovered() -> None:
    logs = filled(10, max_events=4)
    assert not logs.recover(KEY, "epoch-1", 5, now=11.0).recovered
    recovered = logs.recover(KEY, "epoch-1", 6, now=11.0)
    assert recovered.recovered
    assert [r.offset for r in recovered.frames] == [7, 8, 9, 10]


def test_an_expired_log_is_dropped_but_numbering_continues() -> None:
    logs = filled(3, max_age=10.0)
    logs.expire_all(now=100.0)
    assert logs.log_count == 0
    assert not logs.recover(KEY, "epoch-1", 1, now=100.0).recovered
    assert logs.next_offset(KEY) == 4


def test_without_since_nothing_is_replayed() -> None:
    recovery = filled(3).recover(KEY, None, None, now=4.0)
    assert not recovery.recovered
    assert recovery.frames == ()
    assert recovery.last_offset == 3


def _expired_thread(logs: ThreadLogs, key: tuple[str, str], now: float) -> None:
    logs.append(key, logs.next_offset(key), "frame", now)
    logs.recover(key, None, None, now + logs.max_age + 1)


def test_what_expired_logs_leave_behind_is_bounded_by_count() -> None:
    logs = ThreadLogs("e", 10, 1.0, max_remembered=2, remember_for=1000.0)
    keys = [("u", f"t{n}") for n in range(3)]
    for n, key in enumerate(keys):
        _expired_thread(logs, key, float(n))
    assert logs.remembered_count == 2
    assert [logs.last_offset(k) for k in keys] == [0, 1, 1]
    assert logs.epoch_of(keys[0]) != "e", "a forgotten thread restarts in a new epoch"
    assert logs.epoch_of(keys[1]) == "e", "a remembered thread keeps its epoch"
    told = logs.recover(keys[0], "e", 1, now=10.0)
    assert (told.recovered, told.last_offset) == (False, 0)


def test_what_expired_logs_leave_behind_is_bounded_by_time() -> None:
    logs = ThreadLogs("e", 10, 1.0, remember_for=5.0)
    _expired_thread(logs, KEY, 0.0)
    logs.expire_all(now=6.0)
    assert logs.last_offset(KEY) == 1, "kept remember_for seconds after the log expired"
    logs.expire_all(now=8.0)
    assert logs.remembered_count == 0
    assert logs.next_offset(KEY) == 1
    first_epoch = logs.epoch_of(KEY)
    assert first_epoch != "e"
    logs.append(KEY, 1, "frame", 9.0)
    assert logs.epoch_of(KEY) == first_epoch
