"""Key names: on a cluster every name of one user hashes to one slot (so that the scripts that
touch several keys, and publish on the user's channel, run on one node), users still spread
over the slots, and on a single Redis the names are the ones earlier versions used."""

from fnmatch import fnmatch

import pytest
from redis.crc import key_slot

from wsguard.backends.redis.keyspace import Keys, ticket_digest

USERS = ["alice", "u:1", "{braces}", "a}b{c", "ünï\u2028code", "100%", "x" * 300, " "]


@pytest.mark.parametrize("user_id", USERS)
def test_every_name_of_one_user_is_in_one_slot_on_a_cluster(user_id: str) -> None:
    keys = Keys(hash_tags=True)
    names = [
        keys.leases(user_id),
        keys.thread_meta(user_id, "thr_1"),
        keys.thread_log(user_id, "thr_1"),
        keys.thread_meta(user_id, "other:thread-2"),
        keys.thread_log(user_id, "other:thread-2"),
        keys.user_epoch(user_id),
        keys.user_events(user_id),
        keys.user_tickets(user_id),
    ]
    assert len({key_slot(name.encode()) for name in names}) == 1, names
    assert keys.user_of_leases(keys.leases(user_id)) == user_id
    assert keys.user_events(user_id).startswith(keys.user_events_prefix)


def test_users_spread_over_the_slots() -> None:
    keys = Keys(hash_tags=True)
    slots = {key_slot(keys.leases(f"user-{n}").encode()) for n in range(1000)}
    assert len(slots) > 900


def test_a_single_redis_keeps_the_names_of_earlier_versions() -> None:
    keys = Keys()
    assert keys.leases("a b") == "wsguard:u:a%20b:leases"
    assert keys.thread_meta("a", "t") == "wsguard:t:a:t:meta"
    assert keys.thread_log("a", "t") == "wsguard:t:a:t:log"
    assert keys.user_epoch("a") == keys.user_epoch("b") == "wsguard:epoch"
    assert keys.user_of_leases(keys.leases("a b")) == "a b"


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="braces"):
        Keys("wsguard{x}")


def test_a_ticket_is_known_by_its_digest_only() -> None:
    keys = Keys(hash_tags=True)
    ticket = "tkt_01JABCDEFGHJKMNPQRSTVWXYZ0"
    digest = ticket_digest(ticket)
    assert len(digest) == 64
    assert ticket not in keys.ticket(digest)
    assert keys.ticket(digest) == f"wsguard:ticket:{digest}"
    assert keys.user_tickets("a b") == "wsguard:u:{a%20b}:tickets"
    assert Keys().user_tickets("a b") == "wsguard:u:a%20b:tickets"
    assert not fnmatch(keys.user_tickets("a"), keys.lease_pattern()), "no lease scan reads it"
