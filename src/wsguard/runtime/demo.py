"""The built-in demo agent run (docs/protocol.md section 5): the events an AI-agent chat streams."""

import asyncio
from typing import Any

from wsguard.context import RunContext
from wsguard.ids import REQUEST, RUN, new_id
from wsguard.runtime.hub import Hub


def new_run(user_id: str, thread_id: str) -> RunContext:
    """The run's ids, created here, once, by the request that starts it."""
    return RunContext(user_id, thread_id, new_id(RUN), new_id(REQUEST))


def demo_steps(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of one run, in order: started, thinking, a tool call per tool, completed."""
    tools = ["search", "summarize"] if len(text) % 2 else ["search"]
    steps: list[tuple[str, dict[str, Any]]] = [
        ("agent_started", {"input": text[:200]}),
        ("agent_thinking", {"thought": "Reading the request."}),
    ]
    for index, tool in enumerate(tools):
        steps.append(("tool_executing", {"tool": tool, "call": index}))
        steps.append(("tool_completed", {"tool": tool, "call": index, "result": f"{tool} done"}))
    steps.append(("agent_thinking", {"thought": "Writing the answer."}))
    steps.append(("agent_completed", {"answer": f"Done: {text[:100]}"}))
    return steps


def start_demo_run(hub: Hub, run: RunContext, text: str) -> bool:
    """Stream the run's events to its thread in the background; it outlives its connections.

    False when the user has as many runs going as the server allows (nothing is started).
    """

    async def body() -> None:
        delay = hub.settings.demo_step_delay
        for event, data in demo_steps(text):
            await hub.publish(run.user_id, run.thread_id, event, data, run)
            if delay:
                await asyncio.sleep(delay)

    return hub.start_run(run, body)
