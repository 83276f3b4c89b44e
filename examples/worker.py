"""A worker that streams an agent run's events to its user with ``wsguard.publisher``: the body
of a Celery or RQ task, run here as a script.

Every event carries an idempotency key made of the run id and the step's number, so a task that
is retried (the broker redelivered it, the worker died half-way, a publish raised
``BrokerUnavailable`` after Redis had taken the event) publishes the same keys again: the
events already published return their first offsets and are not delivered twice, the rest are
published once. The answer's token deltas go in batches, one round trip each.

    python examples/worker.py --backend redis://127.0.0.1:6379/0 --user alice --thread chat-1
    python examples/worker.py --backend http://127.0.0.1:8765 --api-key KEY --user alice --thread chat-1

It prints one JSON line per event: ``{"event": ..., "offset": ...}``; exit status 1 (and the
reason on stderr) when an event could not be published after a few tries.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from wsguard import ids
from wsguard.publisher import BrokerUnavailable, Publisher, PublishError, PublishItem

T = TypeVar("T")

ATTEMPTS = 4
"""Tries per publish before the task gives up (and its queue retries the whole task)."""


def with_retries(publish: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Try again after :class:`BrokerUnavailable` (safe: every event has an idempotency key);
    any other :class:`PublishError` is the event's own fault and goes up at once."""
    for attempt in range(1, attempts + 1):
        try:
            return publish()
        except BrokerUnavailable:
            if attempt == attempts:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def answer_tokens(text: str, count: int) -> Iterator[str]:
    words = f"Here is what I found about {text}:".split() + [f"point-{n}" for n in range(count)]
    for word in words[:count]:
        yield word + " "


def stream_run(
    publisher: Publisher, user_id: str, thread_id: str, run_id: str, text: str, tokens: int, batch: int = 8
) -> list[tuple[str, int | None]]:
    """Publish one run: started, thinking, a tool call, the answer in token batches, completed.
    Returns (event, offset) for every event, in order."""
    request_id = ids.new_id(ids.REQUEST)
    steps = iter(range(1, 1_000_000))
    published: list[tuple[str, int | None]] = []

    def item(event: str, data: dict[str, object]) -> PublishItem:
        return PublishItem(user_id, thread_id, event, data, run_id, request_id, f"{run_id}:{next(steps)}")

    def send(items: list[PublishItem]) -> None:
        offsets = with_retries(lambda: publisher.publish_many(items))
        published.extend((i.event, offset) for i, offset in zip(items, offsets, strict=True))

    send([item("agent_started", {"text": text})])
    send([item("agent_thinking", {"thought": "looking it up"})])
    send([item("tool_executing", {"tool": "search", "query": text})])
    send([item("tool_completed", {"tool": "search", "results": 3})])
    pending: list[PublishItem] = []
    for token in answer_tokens(text, tokens):
        pending.append(item("agent_delta", {"text": token}))
        if len(pending) == batch:
            send(pending)
            pending = []
    if pending:
        send(pending)
    send([item("agent_completed", {"tokens": tokens})])
    return published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend", required=True, help="redis://, redis-sentinel://, redis-cluster:// or http(s)://"
    )
    parser.add_argument("--api-key", help="with an http(s):// backend")
    parser.add_argument("--user", required=True)
    parser.add_argument("--thread", required=True)
    parser.add_argument(
        "--run-id", default=None, help="the same id again retries the run (default: a new one)"
    )
    parser.add_argument("--text", default="the weather")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    run_id = args.run_id or ids.new_id(ids.RUN)
    try:
        with Publisher.from_url(args.backend, api_key=args.api_key, timeout=args.timeout) as publisher:
            published = stream_run(publisher, args.user, args.thread, run_id, args.text, args.tokens)
    except PublishError as error:
        print(f"worker: run {run_id} not published: {error}", file=sys.stderr)
        return 1
    for event, offset in published:
        print(json.dumps({"event": event, "offset": offset, "run_id": run_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
