"""The verified-token memory of ``TokenAuthority``: a token in use is verified once a minute and
remembered once; nothing is held for a token no longer used once the sweeper has run."""

from __future__ import annotations

import time

import pytest

from wsguard.server.auth import RECHECK_SECONDS, VERIFIED_TOKENS, TokenAuthority, Unauthorized
from wsguard.server.jwt_keys import KeySource, SecretKey


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _authority(secret: str, clock: Clock) -> tuple[TokenAuthority, list[KeySource]]:
    sources: list[KeySource] = [SecretKey(secret)]
    return TokenAuthority(sources, leeway=0, issuing_secret=secret, clock=clock), sources


def test_a_token_in_use_for_an_hour_is_remembered_once_and_checked_again_each_minute(clock: Clock) -> None:
    authority, sources = _authority("s" * 32, clock)
    token = authority.issue("alice", ttl=7200)
    for _ in range(60):
        assert authority.verify(token).user_id == "alice"
        clock.now += RECHECK_SECONDS + 1
    assert len(authority) == 1
    authority.verify(token)
    sources[0] = SecretKey("another key" * 3)
    assert authority.verify(token).user_id == "alice", "checked less than a minute ago"
    clock.now += RECHECK_SECONDS
    with pytest.raises(Unauthorized):
        authority.verify(token)


def test_the_sweeper_forgets_tokens_verified_more_than_a_minute_ago(clock: Clock) -> None:
    authority, _ = _authority("s" * 32, clock)
    old = [authority.issue(f"old-{n}") for n in range(50)]
    for token in old:
        authority.verify(token)
    clock.now += RECHECK_SECONDS / 2
    recent = authority.issue("recent")
    authority.verify(recent)
    clock.now += RECHECK_SECONDS / 2
    assert authority.prune(clock.now) == 50
    assert len(authority) == 1
    clock.now += RECHECK_SECONDS
    assert authority.prune(clock.now) == 1
    assert len(authority) == 0


def test_distinct_tokens_never_grow_the_memory_past_its_bound(clock: Clock) -> None:
    authority, _ = _authority("s" * 32, clock)
    expires = int(time.time()) + 3600
    for n in range(VERIFIED_TOKENS + 500):
        authority.verify(authority.issue(f"user-{n}", ttl=expires - time.time()))
    assert len(authority) == VERIFIED_TOKENS
