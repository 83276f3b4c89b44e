"""Which users' channels an instance holds, decided without Redis: joins follow the first
connection of a user, leaves the last, one command per channel in flight, nothing left over."""

import random

from wsguard.backends.redis.channels import ChannelCommand, UserChannels

SUB, UNSUB = ChannelCommand.SUBSCRIBE, ChannelCommand.UNSUBSCRIBE


def confirm_all(channels: UserChannels) -> dict[ChannelCommand, list[str]]:
    """Send what is pending and let Redis confirm it, in order, as it would."""
    sent = channels.pending(0.0)
    for command, names in sent.items():
        for name in names:
            channels.confirmed(command, name)
    return sent


def test_a_user_is_joined_on_the_first_connection_and_left_after_the_last() -> None:
    channels = UserChannels()
    channels.hold("c1", "u:alice")
    channels.hold("c2", "u:alice")
    assert channels.pending(0.0) == {SUB: ["u:alice"]}
    assert not channels.live("u:alice")
    channels.confirmed(SUB, "u:alice")
    assert channels.live("u:alice")
    channels.drop("c1")
    assert channels.pending(0.0) == {}
    channels.drop("c2")
    assert channels.pending(0.0) == {UNSUB: ["u:alice"]}
    assert channels.subscribed_count == 1
    channels.confirmed(UNSUB, "u:alice")
    assert (channels.subscribed_count, channels.joins, channels.leaves, len(channels)) == (0, 1, 1, 0)


def test_a_rejoin_while_the_leave_is_in_flight_is_not_live_until_redis_subscribes_again() -> None:
    channels = UserChannels()
    channels.hold("c1", "u:bob")
    confirm_all(channels)
    channels.drop("c1")
    assert channels.pending(0.0) == {UNSUB: ["u:bob"]}
    channels.hold("c2", "u:bob")
    assert channels.pending(0.0) == {}, "a second command while one is in flight"
    assert not channels.live("u:bob"), "live although Redis is about to unsubscribe"
    channels.confirmed(UNSUB, "u:bob")
    assert not channels.live("u:bob")
    assert channels.pending(0.0) == {SUB: ["u:bob"]}
    channels.confirmed(SUB, "u:bob")
    assert channels.live("u:bob")


def test_a_confirmation_of_nothing_sent_changes_nothing() -> None:
    channels = UserChannels()
    channels.confirmed(SUB, "u:stranger")
    channels.hold("c1", "u:carol")
    channels.pending(0.0)
    channels.confirmed(UNSUB, "u:carol")
    assert not channels.live("u:carol")
    assert (channels.joins, channels.leaves, len(channels)) == (0, 0, 2)


def test_a_reset_resubscribes_only_the_users_still_held() -> None:
    channels = UserChannels()
    for n in range(3):
        channels.hold(f"c{n}", f"u:{n}")
    confirm_all(channels)
    channels.drop("c0")
    channels.pending(0.0)
    channels.reset()
    assert channels.subscribed_count == 0
    assert not channels.live("u:1")
    assert sorted(channels.pending(0.0)[SUB]) == ["u:1", "u:2"]
    assert channels.settled() is False


def test_holding_twice_or_dropping_unknown_connections_is_harmless() -> None:
    channels = UserChannels()
    channels.hold("c1", "u:a")
    channels.hold("c1", "u:a")
    channels.drop("nobody")
    confirm_all(channels)
    channels.drop("c1")
    channels.drop("c1")
    confirm_all(channels)
    assert (len(channels), channels.joins, channels.leaves) == (0, 1, 1)


def test_random_churn_ends_with_exactly_the_held_users_subscribed_and_nothing_else() -> None:
    rng = random.Random(16)
    channels = UserChannels()
    redis: set[str] = set()
    held: dict[str, str] = {}
    in_flight: list[tuple[ChannelCommand, str]] = []
    for step in range(5000):
        action = rng.random()
        if action < 0.4:
            connection, user = f"c{step}", f"u:{rng.randrange(20)}"
            channels.hold(connection, user)
            held[connection] = user
        elif action < 0.8 and held:
            connection = rng.choice(sorted(held))
            channels.drop(connection)
            del held[connection]
        elif action < 0.9:
            for command, names in channels.pending(0.0).items():
                in_flight.extend((command, name) for name in names)
        elif in_flight:
            command, name = in_flight.pop(0)
            (redis.add if command is SUB else redis.discard)(name)
            channels.confirmed(command, name)
        wanted = set(held.values())
        for user in wanted:
            if channels.live(user):
                assert user in redis, f"{user} taken for live but Redis has it unsubscribed"
    for connection in list(held):
        channels.drop(connection)
    while True:
        for command, names in channels.pending(0.0).items():
            in_flight.extend((command, name) for name in names)
        if not in_flight:
            break
        command, name = in_flight.pop(0)
        (redis.add if command is SUB else redis.discard)(name)
        channels.confirmed(command, name)
    assert redis == set()
    assert (len(channels), channels.subscribed_count) == (0, 0)
    assert channels.joins == channels.leaves > 0


def test_a_command_whose_confirmation_is_lost_is_sent_again_until_confirmed() -> None:
    channels = UserChannels()
    channels.hold("c1", "u:d")
    assert channels.pending(10.0) == {SUB: ["u:d"]}
    assert channels.pending(11.0) == {}, "sent again before it is overdue"
    assert channels.pending(12.0) == {SUB: ["u:d"]}
    channels.confirmed(SUB, "u:d")
    channels.drop("c1")
    assert channels.pending(13.0) == {UNSUB: ["u:d"]}
    assert channels.pending(15.5) == {UNSUB: ["u:d"]}
    channels.confirmed(UNSUB, "u:d")
    assert channels.pending(20.0) == {}
    assert (len(channels), channels.joins, channels.leaves) == (0, 1, 1)


def test_only_an_unsubscription_redis_sends_unasked_counts_as_dropped() -> None:
    channels = UserChannels()
    channels.hold("c1", "u:dora")
    assert not channels.dropped("u:dora"), "not subscribed yet"
    channels.pending(0.0)
    assert not channels.dropped("u:dora"), "the subscription is in flight"
    channels.confirmed(SUB, "u:dora")
    assert channels.dropped("u:dora"), "held, nothing sent: an unsubscription now is Redis's own"
    channels.drop("c1")
    assert channels.pending(0.0) == {UNSUB: ["u:dora"]}
    assert not channels.dropped("u:dora"), "our own leave"
    channels.confirmed(UNSUB, "u:dora")
    assert not channels.dropped("u:dora"), "a late duplicate of a resent leave"
    assert not channels.dropped("u:nobody")
