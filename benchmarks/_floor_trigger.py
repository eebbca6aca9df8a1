"""Control for trigger_scale.py: a trigger that makes no HTTP request at all.

It keeps our trigger's schedule (one jittered interval before the first poll, then one
poll every interval) but its "poll" is a plain sleep as long as the injected latency, and
it holds ``extra_objects`` small long-lived containers, standing in for the state a real
trigger keeps while it waits (ours keeps a hook, a client, the last batch, its progress
and outage bookkeeping). It runs in the same kind of process (Airflow imported), so the
garbage collector walks a heap of the same size.

What it answers: how long the event loop stalls at N triggers when the triggers' own code
costs nothing. With no extra objects that is the floor of the loop itself; with as many
long-lived objects per trigger as ours keeps, CPython's full collections appear even
though nothing is requested, which separates the collector's share from the HTTP's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

_wire_wait = asyncio.sleep  # bound now: the benchmark swaps this module's ``asyncio`` for its schedule spy


class FloorHook:
    """Answers every poll after ``latency`` seconds, without a socket."""

    latency = 0.1

    async def aget_batch(self, batch_id: str) -> None:
        await _wire_wait(self.latency)


class FloorTrigger:
    def __init__(self, batch_id: str, poll_interval: float, extra_objects: int) -> None:
        self.batch_id = batch_id
        self.poll_interval = poll_interval
        self.extra_objects = extra_objects

    async def run(self) -> AsyncIterator[Any]:
        hook = FloorHook()
        state = [[] for _ in range(self.extra_objects)]  # noqa: F841 - held for the trigger's lifetime
        await asyncio.sleep(self.poll_interval * (1 - 0.2 * random.random()))
        while True:
            await hook.aget_batch(self.batch_id)
            await asyncio.sleep(self.poll_interval)
        yield  # an async generator, like a real trigger's run(); never reached
