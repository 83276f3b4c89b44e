"""The memory backend's tickets: single use, a deadline, and a per-user cap that expired tickets
count toward until the sweeper prunes them (as before tickets moved behind the backend)."""

from wsguard.core.tickets import TicketTable


def test_a_ticket_is_redeemed_once_and_gone_after_its_deadline() -> None:
    table = TicketTable()
    assert table.issue("t1", "alice", "p1", deadline=10.0, max_per_user=0)
    assert table.issue("t2", "alice", "p2", deadline=10.0, max_per_user=0)
    assert table.redeem("t1", now=5.0) == "p1"
    assert table.redeem("t1", now=5.0) is None, "single use"
    assert table.redeem("t2", now=10.5) is None, "expired"
    assert table.redeem("t2", now=5.0) is None, "an expired ticket is gone once tried"
    assert table.redeem("unknown", now=0.0) is None
    assert len(table) == 0


def test_the_cap_counts_unused_tickets_and_expired_ones_until_pruned() -> None:
    table = TicketTable()
    assert table.issue("a1", "alice", "", deadline=1.0, max_per_user=2)
    assert table.issue("a2", "alice", "", deadline=9.0, max_per_user=2)
    assert not table.issue("a3", "alice", "", deadline=9.0, max_per_user=2), "at the cap"
    assert table.issue("b1", "bob", "", deadline=9.0, max_per_user=2), "another user's own cap"
    assert not table.issue("a3", "alice", "", deadline=9.0, max_per_user=2), "a1 expired, not pruned"
    assert table.prune(now=2.0) == 1
    assert table.issue("a3", "alice", "", deadline=9.0, max_per_user=2)
    assert table.redeem("a2", now=3.0) == ""
    assert table.issue("a4", "alice", "", deadline=9.0, max_per_user=2), "a used ticket frees its place"
    assert table.prune(now=10.0) == 3
    assert len(table) == 0
    assert table._outstanding == {}, "no per-user record is left behind"
