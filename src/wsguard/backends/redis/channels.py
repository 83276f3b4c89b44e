"""Which users' event channels this instance listens to: the pure part of sharded delivery.

Each user has one pub/sub channel; an instance holds it exactly while it holds a connection of
that user, so that an event reaches only the instances that have someone to give it to. This
class decides what to SUBSCRIBE and UNSUBSCRIBE and reads Redis's confirmations; the backend
sends the commands. At most one command per channel is in flight, so a leave followed at once by
a join can never be taken for live before Redis has actually subscribed again.
"""

from dataclasses import dataclass, field
from enum import StrEnum

RESEND_AFTER = 2.0
"""Seconds without a confirmation after which a (un)subscription is sent again."""


class ChannelCommand(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(slots=True)
class _Channel:
    connections: set[str] = field(default_factory=set)
    subscribed: bool = False
    """What Redis last confirmed."""
    in_flight: ChannelCommand | None = None
    sent_at: float = 0.0


@dataclass(slots=True)
class UserChannels:
    """The channels wanted (users with a connection here) against the channels Redis confirmed."""

    _channels: dict[str, _Channel] = field(default_factory=dict)
    _of_connection: dict[str, str] = field(default_factory=dict)
    joins: int = 0
    """SUBSCRIBEs Redis confirmed, since start (reconnects included)."""
    leaves: int = 0
    """UNSUBSCRIBEs Redis confirmed."""

    def hold(self, connection_id: str, channel: str) -> None:
        """A connection of the channel's user is here (holding it twice is harmless)."""
        if self._of_connection.get(connection_id) == channel:
            return
        self.drop(connection_id)
        self._of_connection[connection_id] = channel
        self._channels.setdefault(channel, _Channel()).connections.add(connection_id)

    def drop(self, connection_id: str) -> None:
        """The connection is gone (dropping twice, or an unknown one, is harmless)."""
        channel = self._of_connection.pop(connection_id, None)
        if channel is None:
            return
        state = self._channels[channel]
        state.connections.discard(connection_id)
        self._forget_if_done(channel, state)

    def pending(self, now: float, resend_after: float = RESEND_AFTER) -> dict[ChannelCommand, list[str]]:
        """The commands to send now, marked in flight: one per channel whose want differs from
        what Redis confirmed and that has no command outstanding, and again any command whose
        confirmation is overdue (both commands are idempotent in Redis, so a confirmation lost
        on a loaded connection costs a resend, never a channel held or missed for good)."""
        commands: dict[ChannelCommand, list[str]] = {}
        for channel, state in self._channels.items():
            if state.in_flight is not None:
                if now - state.sent_at >= resend_after:
                    state.sent_at = now
                    commands.setdefault(state.in_flight, []).append(channel)
                continue
            wanted = bool(state.connections)
            if wanted != state.subscribed:
                command = ChannelCommand.SUBSCRIBE if wanted else ChannelCommand.UNSUBSCRIBE
                state.in_flight, state.sent_at = command, now
                commands.setdefault(command, []).append(channel)
        return commands

    def confirmed(self, command: ChannelCommand, channel: str) -> None:
        """Redis confirmed a (un)subscription; a confirmation of nothing we sent is ignored."""
        state = self._channels.get(channel)
        if state is None or state.in_flight is not command:
            return
        state.in_flight = None
        state.subscribed = command is ChannelCommand.SUBSCRIBE
        if state.subscribed:
            self.joins += 1
        else:
            self.leaves += 1
        self._forget_if_done(channel, state)

    def dropped(self, channel: str) -> bool:
        """An UNSUBSCRIBE confirmation for ``channel`` would be one Redis sent unasked: we hold the
        channel and sent nothing for it (a cluster drops a channel's subscribers when its slot
        moves to another node). A late duplicate of a resent command never looks like this: a
        second confirmation arrives while the next command is in flight, or after a leave."""
        state = self._channels.get(channel)
        return state is not None and state.subscribed and state.in_flight is None

    def reset(self) -> None:
        """The pub/sub connection is gone, and every subscription with it."""
        for channel, state in list(self._channels.items()):
            state.subscribed = False
            state.in_flight = None
            self._forget_if_done(channel, state)

    def live(self, channel: str) -> bool:
        """Redis has us subscribed and no command on the channel is outstanding."""
        state = self._channels.get(channel)
        return state is not None and state.subscribed and state.in_flight is None

    def settled(self) -> bool:
        """No command is outstanding."""
        return all(state.in_flight is None for state in self._channels.values())

    @property
    def subscribed_count(self) -> int:
        """Channels Redis has us subscribed to (including those being left)."""
        return sum(1 for state in self._channels.values() if state.subscribed)

    @property
    def wanted_count(self) -> int:
        return sum(1 for state in self._channels.values() if state.connections)

    def __len__(self) -> int:
        """Records held, for the leak checks: zero when nothing is connected and all is left."""
        return len(self._channels) + len(self._of_connection)

    def _forget_if_done(self, channel: str, state: _Channel) -> None:
        if not state.connections and not state.subscribed and state.in_flight is None:
            del self._channels[channel]
