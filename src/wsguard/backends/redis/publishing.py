"""Publishing on Redis, without I/O: what the publish script is sent and what its reply means.

One path for every publisher: the Redis backend (``hub.publish``, ``POST /api/publish``) and
:mod:`wsguard.publisher` in a worker process build the same script calls here, so numbering,
epochs, retention, idempotency and the users' channels are the same whoever publishes. Standard
library only (no redis-py, no server module).
"""

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from wsguard.backends.redis.keyspace import Keys
from wsguard.core.frames import JSON, event_frame

_OFFSET_MARK = ',"offset":null,"epoch":""'
META_TTL_FLOOR = 86400.0
"""A thread's epoch and last offset are kept at least a day after its last event."""

ScriptCall = tuple[list[str], list[str]]
"""The keys and arguments of one script call."""


def new_epoch() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class FrameTemplate:
    """An event frame cut around its offset and epoch, which only the publish script knows."""

    head: str
    tail: str
    header_prefix: str

    def render(self, offset: int | None, epoch: str) -> str:
        """The frame the script builds (used by tests to check both sides agree)."""
        number = "null" if offset is None else str(offset)
        return f'{self.head}{number},"epoch":"{epoch}"{self.tail}'


def frame_template(
    *,
    user_id: str,
    event: str,
    thread_id: str | None,
    run_id: str | None,
    request_id: str | None,
    data: JSON,
    ts: float,
) -> FrameTemplate:
    """Encode the event once, leaving holes for the offset and the epoch.

    JSON strings escape every ``"``, so the first ``,"offset":null,"epoch":""`` is the field
    itself and never text inside the event name or ids.
    """
    whole = event_frame(
        event=event,
        thread_id=thread_id,
        run_id=run_id,
        request_id=request_id,
        offset=None,
        epoch="",
        data=data,
        ts=ts,
    )
    at = whole.index(_OFFSET_MARK)
    header = json.dumps([user_id, thread_id], separators=(",", ":"))
    return FrameTemplate(whole[:at] + ',"offset":', whole[at + len(_OFFSET_MARK) :], header[:-1] + ",")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event on its way to the publish script."""

    user_id: str
    thread_id: str | None
    template: FrameTemplate
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the script did with one event."""

    offset: int | None
    epoch: str
    duplicate: bool
    """Its idempotency key was seen within the window: nothing was published, and ``offset`` is
    the first publish's."""


@dataclass(frozen=True, slots=True)
class PublishPlan:
    """The constants of one deployment that every publish script call carries."""

    keys: Keys
    publish_command: str
    """``PUBLISH``, or ``SPUBLISH`` on a cluster."""
    retention_events: int
    retention_ms: int
    meta_ttl_ms: int
    idempotency_ms: int

    @classmethod
    def of(
        cls,
        keys: Keys,
        publish_command: str,
        *,
        retention_events: int,
        retention_seconds: float,
        idempotency_seconds: float,
    ) -> "PublishPlan":
        return cls(
            keys,
            publish_command,
            retention_events,
            max(1, round(retention_seconds * 1000)),
            round(max(retention_seconds * 2, META_TTL_FLOOR) * 1000),
            max(1, round(idempotency_seconds * 1000)),
        )

    def calls(self, events: Sequence[Outgoing], epoch: str) -> list[tuple[list[int], ScriptCall]]:
        """The script calls that publish ``events``, each with the indices of its events, in order.

        One call for all of them on a single Redis; on a cluster, one per user (a script may touch
        only one slot, and all of a user's keys and its channel are in the user's slot).
        ``epoch`` is what a thread or user without one starts with.
        """
        groups: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            groups.setdefault(event.user_id if self.keys.hash_tags else "", []).append(index)
        return [(indices, self._call([events[i] for i in indices], epoch)) for indices in groups.values()]

    def _call(self, events: Sequence[Outgoing], epoch: str) -> ScriptCall:
        keys: list[str] = []
        args = [
            epoch,
            str(self.retention_events),
            str(self.retention_ms),
            str(self.meta_ttl_ms),
            self.publish_command,
            str(self.meta_ttl_ms) if self.keys.hash_tags else "0",
        ]
        for event in events:
            user_id, thread_id = event.user_id, event.thread_id
            if thread_id is None:
                first = second = self.keys.user_epoch(user_id)
            else:
                first, second = (
                    self.keys.thread_meta(user_id, thread_id),
                    self.keys.thread_log(user_id, thread_id),
                )
            key = event.idempotency_key
            keys += [first, second, first if key is None else self.keys.idempotency(user_id, thread_id, key)]
            template = event.template
            args += [
                "u" if thread_id is None else "t",
                template.head,
                template.tail,
                template.header_prefix,
                self.keys.user_events(user_id),
                "0" if key is None else str(self.idempotency_ms),
            ]
        return keys, args


def parse_outcomes(reply: Sequence[object]) -> list[Outcome]:
    """``[offset, epoch, duplicate, ...]``, three per event (offset 0: a user-level event)."""
    if len(reply) % 3:
        raise ValueError(f"a publish reply of {len(reply)} items")
    outcomes = []
    for at in range(0, len(reply), 3):
        offset, epoch, duplicate = (_text(item) for item in reply[at : at + 3])
        number = int(offset)
        outcomes.append(Outcome(number or None, epoch, duplicate == "1"))
    return outcomes


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
