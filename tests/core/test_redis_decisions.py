"""The Redis backend's pure decisions, without Redis: what the scripts' replies mean, the frame
cut around offset and epoch, the recovery rule, the renewal order and the reconnect backoff."""

import json
import random

import pytest

from wsguard.backends.redis.decisions import (
    LeaseTable,
    LocalLease,
    RenewalOutcome,
    RenewalSchedule,
    StreamRead,
    ThreadMarks,
    control_payload,
    decide_recovery,
    disconnect_payload,
    parse_admission,
    parse_control,
    parse_message,
    parse_renewal,
    parse_shared_key,
    parse_stream_read,
    parse_ticket_value,
    renewal_args,
    ticket_value,
)
from wsguard.backends.redis.directory import live_leases
from wsguard.backends.redis.publishing import frame_template
from wsguard.core.frames import event_frame

TRICKY_NAMES = ["plain", 'has ,"offset":null,"epoch":"" inside', 'quote " and \\n', "ünï\u2028code"]


@pytest.mark.parametrize("event", TRICKY_NAMES)
def test_the_template_renders_exactly_the_frame_the_memory_backend_encodes(event: str) -> None:
    data = {"text": ',"offset":null,"epoch":""', "n": [1, 2]}
    template = frame_template(
        user_id="u:1", event=event, thread_id="t.1", run_id="run_1", request_id="req_1", data=data, ts=1.5
    )
    for offset in (1, 12345678901):
        expected = event_frame(
            event=event,
            thread_id="t.1",
            run_id="run_1",
            request_id="req_1",
            offset=offset,
            epoch="ab12",
            data=data,
            ts=1.5,
        )
        assert template.render(offset, "ab12") == expected
    user_level = frame_template(
        user_id="u", event=event, thread_id=None, run_id=None, request_id=None, data={}, ts=2.0
    )
    assert json.loads(user_level.render(None, "e"))["offset"] is None


def test_a_published_message_parses_back_into_its_envelope() -> None:
    template = frame_template(
        user_id='odd "user"', event="e", thread_id="t", run_id=None, request_id=None, data={}, ts=0.0
    )
    frame = template.render(7, "ep")
    message = parse_message((template.header_prefix + '7,"ep"]\n' + frame).encode())
    assert message.epoch == "ep"
    assert (message.envelope.user_id, message.envelope.thread_id) == ('odd "user"', "t")
    assert message.envelope.offset == 7
    assert message.envelope.frame == frame


def test_admission_reply_marks_which_closes_are_here() -> None:
    reply = [1, b"1700000000123456", b"conn_a", b"inst_me", b"superseded", b"conn_b", b"inst_x", b"replaced"]
    decision, admitted_us = parse_admission(reply, "inst_me")
    assert decision.admitted
    assert admitted_us == "1700000000123456"
    first, second = decision.closes
    assert (first.connection_id, first.here, first.superseded) == ("conn_a", True, True)
    assert (second.connection_id, second.here, second.replaced) == ("conn_b", False, True)
    rejected, no_time = parse_admission([0, b"conn_c", b"inst_x", b"replaced"], "inst_me")
    assert not rejected.admitted
    assert no_time == ""
    assert [c.connection_id for c in rejected.closes] == ["conn_c"]


def test_renewal_goes_newest_first_so_a_lost_lease_is_recreated_for_the_newest() -> None:
    table = LeaseTable()
    table.add(LocalLease("c1", "u", "s", "100"))
    table.add(LocalLease("c3", "u", "s", "300"))
    table.add(LocalLease("c2", "u", "s", "200"))
    table.add(LocalLease("fallback", "u", "s"))
    table.add(LocalLease("other", "v", "s", "50"))
    groups = table.by_user()
    assert [lease.connection_id for lease in groups["u"]] == ["fallback", "c3", "c2", "c1"]
    args = renewal_args("inst", 2000, 20, groups["u"])
    assert args[:3] == ["inst", "2000", "20"]
    assert args[3:6] == ["fallback", "s", ""]
    outcomes = parse_renewal([b"renewed", b"recreated", b"over", b"renewed"], groups["u"])
    assert [o for _, o in outcomes][1:3] == [RenewalOutcome.RECREATED, RenewalOutcome.OVER]
    with pytest.raises(ValueError, match="1 outcomes for 4 leases"):
        parse_renewal([b"renewed"], groups["u"])
    assert table.remove("c1") is not None
    assert table.remove("c1") is None
    assert len(table) == 4


def test_leases_are_renewed_three_times_per_ttl() -> None:
    schedule = RenewalSchedule(2.0)
    assert schedule.interval == pytest.approx(2 / 3)
    assert schedule.ttl_ms == 2000


def test_control_messages_round_trip() -> None:
    assert parse_control(control_payload("conn_1", True)).replaced
    assert parse_control(control_payload("conn_1", False)).connection_id == "conn_1"
    assert not parse_control(control_payload("conn_1", True)).disconnected
    disconnect = parse_control(disconnect_payload("conn_2"))
    assert disconnect.disconnected
    assert disconnect.connection_id == "conn_2"
    assert not disconnect.replaced


def test_live_leases_skip_expired_and_malformed_ones_oldest_first() -> None:
    fields = {
        b"conn_b": b"20000 1000002 inst_1 ses_b",
        b"conn_a": b"20000 1000001 inst_2 ses_a",
        b"conn_old": b"9999 1000000 inst_1 ses_c",
        b"conn_bad": b"garbage",
    }
    leases = live_leases("alice", fields, now_ms=10_000)
    assert [(lease.connection_id, lease.instance_id) for lease in leases] == [
        ("conn_a", "inst_2"),
        ("conn_b", "inst_1"),
    ]
    assert leases[0].opened_at == 1.000001
    assert leases[0].user_id == "alice"


def _read(last: int, events: list[tuple[int, int]], epoch: str = "e1", now_ms: int = 10_000) -> StreamRead:
    return StreamRead(epoch, last, now_ms, tuple((o, t, f"f{o}") for o, t in events))


def test_recovery_replays_a_complete_tail_only() -> None:
    stream = _read(5, [(3, 9000), (4, 9500), (5, 9900)])
    full = decide_recovery(stream, "e1", 2, max_age_ms=5000)
    assert full.recovered
    assert [r.offset for r in full.frames] == [3, 4, 5]
    assert not decide_recovery(stream, "e1", 1, 5000).recovered, "offset 2 is no longer retained"
    assert not decide_recovery(stream, "e0", 2, 5000).recovered, "another epoch"
    assert not decide_recovery(stream, "e1", 9, 5000).recovered, "ahead of the thread"
    caught_up = decide_recovery(stream, "e1", 5, 5000)
    assert caught_up.recovered
    assert caught_up.frames == ()
    assert not decide_recovery(stream, "e1", 2, max_age_ms=800).recovered, "offset 3 aged out"
    fresh = decide_recovery(stream, None, None, 5000)
    assert not fresh.recovered
    assert fresh.last_offset == 5
    assert fresh.epoch == "e1"


def test_stream_read_reply_parses() -> None:
    read = parse_stream_read([b"ep", b"4", b"123", b"3", b"100", b"f3", b"4", b"110", b"f4"])
    assert (read.epoch, read.last_offset, read.now_ms) == ("ep", 4, 123)
    assert read.events == ((3, 100, "f3"), (4, 110, "f4"))


def test_thread_marks_report_a_new_epoch_once_and_never_go_back() -> None:
    marks = ThreadMarks()
    key = ("u", "t")
    assert marks.note(key, "e1", 5) is False
    assert marks.note(key, "e1", 3) is False
    assert marks.seen(key) == ("e1", 5)
    assert marks.note(key, "e2", 1) is True
    assert marks.seen(key) == ("e2", 1)
    assert marks.note(key, "e2", 2) is False
    marks.keep_only([])
    assert len(marks) == 0
    assert key not in marks


def test_thread_marks_tell_a_history_redis_lost_from_one_it_kept() -> None:
    marks = ThreadMarks()
    key = ("u", "t")
    marks.note(key, "e1", 5, "frame 5")

    def read(last: int, *events: tuple[int, str], epoch: str = "e1") -> StreamRead:
        return StreamRead(epoch, last, 0, tuple((offset, 0, frame) for offset, frame in events))

    assert not marks.diverged(key, read(5, (5, "frame 5"))), "caught up"
    assert not marks.diverged(key, read(7, (5, "frame 5"), (6, "f6"), (7, "f7"))), "went on"
    assert marks.diverged(key, read(3, (3, "f3"))), "the last offset went back"
    assert marks.diverged(key, read(6, (5, "another 5"), (6, "f6"))), "offset 5 is another event"
    assert not marks.diverged(key, read(9, (8, "f8"), (9, "f9"))), "offset 5 trimmed: cannot tell"
    assert not marks.diverged(key, read(2, epoch="e2")), "a new epoch is a restart, not a divergence"
    assert not marks.diverged(("u", "other"), read(0))
    marks.note(key, "e1", 8)
    assert not marks.diverged(key, read(8, (8, "whatever"))), "no frame seen at 8: only the offset counts"
    assert marks.diverged(key, read(7, (7, "f7")))


def test_reconnect_backoff_is_full_jitter_up_to_its_cap() -> None:
    from wsguard.backends.redis.backend import RECONNECT_BACKOFF

    random.seed(7)
    first = [RECONNECT_BACKOFF.compute(0) for _ in range(2000)]
    capped = [RECONNECT_BACKOFF.compute(30) for _ in range(2000)]
    assert max(first) <= 0.05
    assert max(capped) <= 1.0
    # Full jitter spreads each delay over [0, ceiling]; equal jitter never goes below half of it.
    assert min(first) < 0.05 / 4
    assert min(capped) < 1.0 / 4
    assert 0.4 < sum(capped) / len(capped) < 0.6


@pytest.mark.parametrize("user_id", ["alice", "a\nb", "100%", "{x}", " "])
def test_a_ticket_value_gives_back_its_user_and_payload(user_id: str) -> None:
    payload = '{"v":1,"user_id":"x\\ny"}\nand a newline'
    assert parse_ticket_value(ticket_value(user_id, payload)) == (user_id, payload)
    assert parse_ticket_value(ticket_value(user_id, payload).encode()) == (user_id, payload)


@pytest.mark.parametrize("stored", ["", "no newline", "\npayload without a user"])
def test_anything_else_is_not_a_ticket_value(stored: str) -> None:
    with pytest.raises(ValueError, match="not a ticket value"):
        parse_ticket_value(stored)


def test_a_shared_key_is_hex_of_at_least_16_bytes() -> None:
    assert parse_shared_key(b"ab" * 32) == b"\xab" * 32
    for stored in (b"ab" * 8 + b"a", b"zz" * 16, b"ab" * 15):
        with pytest.raises(ValueError, match=r"hexadecimal|bytes"):
            parse_shared_key(stored)
