"""The registry's decisions, without sockets: limits, eviction order, takeover, idempotent release."""

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wsguard.core.registry import Handle, Registry
from wsguard.settings import LimitPolicy


def test_evict_oldest_closes_the_earliest_admitted() -> None:
    registry = Registry(3, LimitPolicy.EVICT_OLDEST)
    handles = [registry.admit("u", f"c{i}", f"s{i}").handle for i in range(3)]
    admission = registry.admit("u", "c3", "s3")
    assert admission.handle is not None
    assert admission.evicted == (handles[0],)
    assert [h.connection_id for h in registry.handles_of("u")] == ["c1", "c2", "c3"]


def test_reject_refuses_without_admitting() -> None:
    registry = Registry(2, LimitPolicy.REJECT)
    registry.admit("u", "c0", "s")
    registry.admit("u", "c1", "s")
    admission = registry.admit("u", "c2", "s")
    assert admission.rejected
    assert registry.connection_count == 2
    assert registry.entry_count == 4


def test_takeover_replaces_only_that_session() -> None:
    registry = Registry(5, LimitPolicy.EVICT_OLDEST)
    old = registry.admit("u", "c0", "session-a").handle
    other = registry.admit("u", "c1", "session-b").handle
    admission = registry.admit("u", "c2", "session-a", takeover=True)
    assert admission.replaced == (old,)
    assert old is not None
    assert not registry.holds(old)
    assert other is not None
    assert registry.holds(other)


def test_release_is_idempotent_and_leaves_nothing() -> None:
    registry = Registry(2, LimitPolicy.EVICT_OLDEST)
    handle = registry.admit("u", "c0", "s").handle
    assert handle is not None
    assert registry.release(handle) is True
    assert registry.release(handle) is False
    assert (registry.entry_count, registry.user_count, registry.connection_count) == (0, 0, 0)


def test_a_stale_handle_never_releases_its_successor() -> None:
    registry = Registry(2, LimitPolicy.EVICT_OLDEST)
    first = registry.admit("u", "c0", "s").handle
    assert first is not None
    registry.release(first)
    second = registry.admit("u", "c0", "s").handle
    assert second is not None
    assert registry.release(first) is False
    assert registry.holds(second)


def test_admitting_a_live_connection_id_twice_is_an_error() -> None:
    registry = Registry(2, LimitPolicy.EVICT_OLDEST)
    registry.admit("u", "c0", "s")
    with pytest.raises(ValueError, match="already admitted"):
        registry.admit("u", "c0", "s")


class RegistryMachine(RuleBasedStateMachine):
    """Random admit/release/evict/takeover sequences against a plain model of who is open."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = 3
        self.registry = Registry(self.limit, LimitPolicy.EVICT_OLDEST)
        self.open: dict[str, Handle] = {}
        self.released: list[Handle] = []
        self.counter = 0

    @rule(
        user=st.sampled_from(["alice", "bob", "carol"]),
        session=st.sampled_from(["s1", "s2"]),
        takeover=st.booleans(),
    )
    def admit(self, user: str, session: str, takeover: bool) -> None:
        self.counter += 1
        connection_id = f"c{self.counter}"
        before = [h for h in self.open.values() if h.user_id == user]
        admission = self.registry.admit(user, connection_id, f"{user}:{session}", takeover=takeover)
        assert admission.handle is not None
        expected_replaced = [h for h in before if takeover and h.session_id == f"{user}:{session}"]
        assert sorted(admission.replaced, key=lambda h: h.sequence) == expected_replaced
        remaining = [h for h in before if h not in expected_replaced]
        overflow = len(remaining) + 1 - self.limit
        expected_evicted = sorted(remaining, key=lambda h: h.sequence)[: max(0, overflow)]
        assert list(admission.evicted) == expected_evicted
        for gone in [*admission.replaced, *admission.evicted]:
            del self.open[gone.connection_id]
            self.released.append(gone)
        self.open[connection_id] = admission.handle

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        connection_id = data.draw(st.sampled_from(sorted(self.open)))
        handle = self.open.pop(connection_id)
        assert self.registry.release(handle) is True
        self.released.append(handle)

    @precondition(lambda self: bool(self.released))
    @rule(data=st.data())
    def release_again(self, data: st.DataObject) -> None:
        handle = data.draw(st.sampled_from(self.released))
        assert self.registry.release(handle) is False

    @invariant()
    def matches_the_model(self) -> None:
        assert self.registry.connection_count == len(self.open)
        assert self.registry.entry_count == 2 * len(self.open)
        assert self.registry.invariant_violations() == []
        for user in ("alice", "bob", "carol"):
            held = self.registry.handles_of(user)
            assert len(held) <= self.limit
            assert {h.connection_id for h in held} == {c for c, h in self.open.items() if h.user_id == user}
        for handle in self.released:
            assert not self.registry.holds(handle)


RegistryMachine.TestCase.settings = hypothesis_settings(max_examples=200, stateful_step_count=40)
TestRegistryMachine = RegistryMachine.TestCase
