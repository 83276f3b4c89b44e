"""Idempotency keys of one process (the memory backend): a retried publish returns the first
one's result instead of publishing again.

Bounded twice: each key is kept for a fixed window, pruned by the sweeper, and at most
``max_entries`` keys are kept (the oldest is forgotten first, so a flood of keys costs a
bounded amount of memory and only shortens how long the oldest are remembered).
"""

from collections import OrderedDict
from typing import Generic, TypeVar

Result = TypeVar("Result")
Scope = tuple[str, str | None, str]
"""(user_id, thread_id or None, idempotency key): a key is the same only for one user and thread."""

MAX_ENTRIES = 100_000


class IdempotencyTable(Generic[Result]):
    def __init__(self, window: float, max_entries: int = MAX_ENTRIES) -> None:
        self.window = window
        self.max_entries = max_entries
        self._entries: OrderedDict[Scope, tuple[float, Result]] = OrderedDict()
        """Scope -> (expires at, the first publish's result), oldest first (a fixed window
        makes insertion order expiry order)."""

    def get(self, scope: Scope, now: float) -> Result | None:
        """The first result for ``scope`` while its window lasts."""
        entry = self._entries.get(scope)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def put(self, scope: Scope, result: Result, now: float) -> None:
        self._entries[scope] = (now + self.window, result)
        self._entries.move_to_end(scope)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def prune(self, now: float) -> None:
        """Forget every key whose window has passed."""
        while self._entries:
            scope, (expires_at, _) = next(iter(self._entries.items()))
            if expires_at > now:
                return
            del self._entries[scope]

    def __len__(self) -> int:
        return len(self._entries)
