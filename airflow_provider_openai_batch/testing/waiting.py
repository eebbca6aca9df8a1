"""Waiting for worker-thread results without holding the state lock.

Engine operations run under a ``threading.Lock`` and must never block while holding it. When
one needs a result that a worker thread is still producing (a plan, result files) it returns
:class:`Pending` instead; the caller waits outside the lock, on the event loop with
``asyncio.wrap_future`` or in plain code with ``Future.result()``, and then retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    future: Future[Any]


async def settle(operation: Callable[[], T | Pending]) -> T:
    """Run ``operation`` until it stops returning :class:`Pending`, awaiting each future on the loop."""
    while True:
        result = operation()
        if not isinstance(result, Pending):
            return result
        await asyncio.wrap_future(result.future)


def settle_sync(operation: Callable[[], T | Pending]) -> T:
    """Blocking twin of :func:`settle` for the server's Python API (called from test threads)."""
    while True:
        result = operation()
        if not isinstance(result, Pending):
            return result
        result.future.result()
