"""What tests can observe about the traffic: a request log and counters.

A test of retry or idempotency logic needs to know how many requests reached the server, which
ones were faulted and whether the client sent its organization/project headers. The log keeps
header values that are safe to show (organization, project, whether auth passed) and never the
API key.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

MAX_LOG_ENTRIES = 100_000
"""The log is bounded so that a long benchmark run cannot grow memory without limit."""


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    route: str
    """The route template, e.g. ``/v1/batches/{batch_id}`` (``path`` for unknown routes)."""
    status: int | None
    """HTTP status sent; ``None`` when the connection was dropped."""
    organization: str | None
    project: str | None
    auth_accepted: bool
    fault: str | None
    """The injected fault kind, if any (``rate_429``, ``fail_next``, ``drop_before``, ``drop_after``...)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=MAX_LOG_ENTRIES)
        self._routes: Counter[str] = Counter()
        self._events: Counter[str] = Counter()

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._log.append(entry)
            self._routes[f"{entry.method} {entry.route}"] += 1
            if not entry.auth_accepted:
                self._events["auth_failures"] += 1

    def count(self, event: str) -> None:
        """Count a domain event (``uploads``, ``batches_created``)."""
        with self._lock:
            self._events[event] += 1

    def log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def stats(self, faults: dict[str, int]) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self._routes),
                "requests_total": sum(self._routes.values()),
                "uploads": self._events["uploads"],
                "batches_created": self._events["batches_created"],
                "auth_failures": self._events["auth_failures"],
                "faults": faults,
            }

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self._routes.clear()
            self._events.clear()
