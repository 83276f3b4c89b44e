"""The publishing decisions, without Redis or a server: what a valid event is, what the publish
script is sent on a single Redis and on a cluster, how its reply and an HTTP answer are read,
idempotency keys of one process, and the history rule every backend shares."""

import json

import pytest

from wsguard.backends.redis.keyspace import Keys
from wsguard.backends.redis.publishing import Outgoing, PublishPlan, frame_template, parse_outcomes
from wsguard.core.frames import encode_history, event_frame, parse_history
from wsguard.core.idempotency import IdempotencyTable
from wsguard.core.publication import (
    BrokerUnavailable,
    EventTooLarge,
    InvalidEvent,
    Publication,
    PublishError,
    PublishRefused,
    batch_from_json,
    check_size,
    from_json,
    publication,
)
from wsguard.core.thread_log import Retained, ThreadLogs, history_of
from wsguard.publisher.plan import PublisherOptions, http_body, http_offsets, prepare, redis_offsets


def _outgoing(user: str, thread: str | None, key: str | None = None) -> Outgoing:
    template = frame_template(
        user_id=user, event="e", thread_id=thread, run_id=None, request_id=None, data={}, ts=0.0
    )
    return Outgoing(user, thread, template, key)


def _plan(hash_tags: bool) -> PublishPlan:
    keys = Keys(hash_tags=hash_tags)
    command = "SPUBLISH" if hash_tags else "PUBLISH"
    return PublishPlan.of(
        keys, command, retention_events=1000, retention_seconds=300, idempotency_seconds=300
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"user_id": ""}, "user_id"),
        ({"thread_id": "bad thread"}, "thread_id"),
        ({"event": 3}, "event"),
        ({"data": [1]}, "data"),
        ({"run_id": 1}, "run_id"),
        ({"idempotency_key": "k" * 257}, "idempotency_key"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_a_malformed_event_names_its_first_bad_field(fields: dict[str, object], problem: str) -> None:
    body: dict[str, object] = {"user_id": "u", "thread_id": "t", "event": "e", "data": {}, **fields}
    with pytest.raises(InvalidEvent, match=problem):
        from_json(body)


def test_the_size_counts_utf8_bytes_of_the_name_and_compact_data() -> None:
    check_size("e", {"t": "é" * 10}, 1 + len('{"t":""}') + 20)
    with pytest.raises(EventTooLarge, match="over 28"):
        check_size("e", {"t": "é" * 10}, 28)
    assert issubclass(EventTooLarge, PublishError)
    assert issubclass(EventTooLarge, ValueError)


def test_a_publication_goes_to_json_and_back_unchanged() -> None:
    event = publication("u", None, "e", None, run_id="run_1", idempotency_key="k")
    assert event.data == {}
    assert from_json(event.as_json()) == event
    assert "request_id" not in event.as_json()
    batch = batch_from_json({"events": [event.as_json(), {**event.as_json(), "thread_id": "t"}]})
    assert batch is not None
    assert [e.thread_id for e in batch] == [None, "t"]
    assert batch_from_json(event.as_json()) is None
    with pytest.raises(InvalidEvent, match=r"events\[1\]: event"):
        batch_from_json({"events": [event.as_json(), {"user_id": "u"}]})
    with pytest.raises(InvalidEvent, match="1 to 1000"):
        batch_from_json({"events": []})


def test_every_event_of_a_batch_is_checked_before_any_is_sent() -> None:
    good = Publication("u", "t", "e", {})
    with pytest.raises(EventTooLarge):
        prepare([good, Publication("u", "t", "e", {"x": "y" * 100})], max_message_bytes=50)
    with pytest.raises(InvalidEvent):
        prepare([good, Publication("u", "no spaces", "e")], max_message_bytes=50)
    with pytest.raises(ValueError, match="timeout"):
        PublisherOptions(timeout=0)


def test_one_script_call_carries_a_whole_batch_on_a_single_redis() -> None:
    plan = _plan(hash_tags=False)
    events = [_outgoing("a", "t"), _outgoing("b", None, "k"), _outgoing("a", "t", "k")]
    [(indices, (keys, args))] = plan.calls(events, "fresh")
    assert indices == [0, 1, 2]
    keys_of = Keys()
    assert keys[:3] == [
        keys_of.thread_meta("a", "t"),
        keys_of.thread_log("a", "t"),
        keys_of.thread_meta("a", "t"),
    ]
    assert keys[3:6] == [
        keys_of.user_epoch("b"),
        keys_of.user_epoch("b"),
        keys_of.idempotency("b", None, "k"),
    ]
    assert keys[8] == keys_of.idempotency("a", "t", "k")
    assert args[:6] == ["fresh", "1000", "300000", str(86400 * 1000), "PUBLISH", "0"]
    per_event = [args[6 + 6 * n : 12 + 6 * n] for n in range(3)]
    assert [(e[0], e[4], e[5]) for e in per_event] == [
        ("t", keys_of.user_events("a"), "0"),
        ("u", keys_of.user_events("b"), "300000"),
        ("t", keys_of.user_events("a"), "300000"),
    ]


def test_on_a_cluster_each_call_stays_in_one_users_slot() -> None:
    plan = _plan(hash_tags=True)
    events = [_outgoing("a", "t"), _outgoing("b", "t", "k"), _outgoing("a", "u", "k"), _outgoing("b", None)]
    calls = plan.calls(events, "fresh")
    assert [indices for indices, _ in calls] == [[0, 2], [1, 3]]
    for indices, (keys, args) in calls:
        user = events[indices[0]].user_id
        assert all(key.count(f"{{{user}}}") == 1 for key in keys), keys
        assert args[4] == "SPUBLISH"
        assert args[5] == str(86400 * 1000)


def test_the_reply_gives_each_event_its_offset_in_the_order_asked() -> None:
    assert parse_outcomes([1, b"ep", 0, 0, b"ep", 0, 7, "ep", 1])[2].duplicate
    replies = [([0, 2], [5, b"e", 0, 6, b"e", 1]), ([1], [0, b"e", 0])]
    assert redis_offsets(3, replies) == [5, None, 6]
    with pytest.raises(PublishError):
        redis_offsets(3, [([0, 1], [5, b"e", 0])])


def test_an_http_answer_is_the_offsets_or_the_error_it_stands_for() -> None:
    one, two = Publication("u", "t", "e"), Publication("u", None, "e")
    assert http_body([one]) == one.as_json()
    assert http_body([one, two]) == {"events": [one.as_json(), two.as_json()]}
    assert http_offsets(1, 200, '{"offset": 4}') == [4]
    assert http_offsets(2, 200, '{"offsets": [4, null]}') == [4, None]
    for status, error in [(400, InvalidEvent), (413, EventTooLarge), (503, BrokerUnavailable)]:
        with pytest.raises(error, match=f"HTTP {status}: nope"):
            http_offsets(1, status, '{"error": "nope"}')
    with pytest.raises(PublishRefused) as refused:
        http_offsets(1, 401, "")
    assert refused.value.status == 401
    with pytest.raises(PublishError, match="unexpected"):
        http_offsets(2, 200, '{"offset": 4}')


def test_idempotency_keys_expire_after_the_window_and_are_bounded() -> None:
    table: IdempotencyTable[int] = IdempotencyTable(window=10.0, max_entries=3)
    table.put(("u", "t", "k"), 1, now=0.0)
    assert table.get(("u", "t", "k"), now=9.9) == 1
    assert table.get(("u", "other", "k"), now=1.0) is None
    assert table.get(("u", "t", "k"), now=10.0) is None
    for n in range(4):
        table.put(("u", "t", f"k{n}"), n, now=5.0 + n)
    assert len(table) == 3
    assert table.get(("u", "t", "k0"), now=6.0) is None
    table.prune(now=16.5)
    assert len(table) == 2
    table.prune(now=100.0)
    assert len(table) == 0


def _retained(*offsets: int) -> list[Retained]:
    return [Retained(offset, 0.0, f'{{"offset":{offset}}}') for offset in offsets]


def test_history_is_complete_only_when_nothing_after_since_is_missing() -> None:
    assert [e.offset for e in history_of("e", 5, _retained(1, 2, 3, 4, 5), 2, 100).events] == [3, 4, 5]
    assert history_of("e", 5, _retained(1, 2, 3, 4, 5), 2, 100).complete
    limited = history_of("e", 5, _retained(3, 4, 5), 2, 2)
    assert [e.offset for e in limited.events] == [3, 4]
    assert limited.complete
    assert not history_of("e", 5, _retained(4, 5), 2, 100).complete
    assert not history_of("e", 5, [], 2, 100).complete
    assert history_of("e", 5, [], 5, 100).complete
    assert not history_of("e", 5, _retained(5), 7, 100).complete


def test_the_memory_log_answers_history_by_the_same_rule_and_ages_events_out() -> None:
    logs = ThreadLogs("ep", max_events=3, max_age=10.0)
    for offset in range(1, 6):
        logs.append(("u", "t"), offset, f"f{offset}", now=float(offset))
    history = logs.history(("u", "t"), 0, 100, now=6.0)
    assert ([e.offset for e in history.events], history.complete, history.last_offset) == (
        [3, 4, 5],
        False,
        5,
    )
    assert logs.history(("u", "t"), 2, 100, now=6.0).complete
    assert logs.history(("u", "other"), 0, 100, now=6.0).events == ()
    aged = logs.history(("u", "t"), 3, 100, now=14.5)
    assert [e.offset for e in aged.events] == [5]
    assert not aged.complete


def test_a_history_body_joins_the_stored_frames_and_parses_back_with_a_position() -> None:
    frames = [
        event_frame(
            event="step", thread_id="t", run_id=None, request_id=None, offset=n, epoch="ep", data={}, ts=0.0
        )
        for n in (3, 4)
    ]
    body = encode_history("t", "ep", 9, frames, complete=True)
    assert json.loads(body)["events"][1]["offset"] == 4
    parsed = parse_history(body)
    assert [e.offset for e in parsed.events] == [3, 4]
    assert (parsed.position.epoch, parsed.position.offset) == ("ep", 4)
    empty = parse_history(encode_history("t", "ep", 9, [], complete=False))
    assert empty.position.offset == 9
    assert not empty.complete
