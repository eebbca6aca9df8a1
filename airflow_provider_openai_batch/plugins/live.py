"""Live batch states, read from the API per connection and kept for a short time.

One refresh per connection serves every open page (ten browser tabs, several users) for
``TTL_SECONDS``: concurrent requests wait on the connection's lock and then use what the first
one read. Batches in a final state are not read again (they no longer change). A batch that
could not be read this time keeps its last known state and is marked stale, never dropped.
The API key stays here: the page only ever receives the batch objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.waiting.pages import default_page_budget
from airflow_provider_openai_batch.waiting.poller import read_batches

TTL_SECONDS = 30.0
READ_TIMEOUT_SECONDS = 10.0
"""A page waits at most this long for the API (whose client retries outages for minutes) before it
shows the last known states, marked stale."""


@dataclass(frozen=True)
class Known:
    """A batch as last read, when, and whether the latest reading missed it."""

    batch: Batch | None
    read_at: float | None
    stale: bool


@dataclass
class _Connection:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    batches: dict[str, tuple[Batch, float]] = field(default_factory=dict)
    fresh_until: float = 0.0
    covered: frozenset[str] = frozenset()
    missed: frozenset[str] = frozenset()
    problem: str | None = None
    account: str | None = None
    """Digest of the connection's account and endpoint: states read for another one are dropped."""


def _final(batch: Batch) -> bool:
    return bool(getattr(batch.status, "is_terminal", False))


class LiveStates:
    """The per-connection cache of batch states (one per app)."""

    def __init__(
        self, ttl: float = TTL_SECONDS, read_timeout: float = READ_TIMEOUT_SECONDS, clock=time.monotonic, wall=time.time
    ) -> None:
        self.ttl = ttl
        self.read_timeout = read_timeout
        self.clock = clock
        self.wall = wall
        self._connections: dict[str, _Connection] = {}

    def _conn(self, conn_id: str) -> _Connection:
        return self._connections.setdefault(conn_id, _Connection())

    def problem(self, conn_id: str) -> str | None:
        return self._conn(conn_id).problem

    async def states(self, conn_id: str, batch_ids: Collection[str]) -> dict[str, Known]:
        """The known state of each id, refreshing the connection's cache when it is too old."""
        conn = self._conn(conn_id)
        wanted = frozenset(batch_ids)
        async with conn.lock:
            if self.clock() >= conn.fresh_until:
                await self._refresh(conn_id, conn, wanted, renew=True)
            elif not wanted <= conn.covered:
                await self._refresh(conn_id, conn, wanted - conn.covered, renew=False)
        out: dict[str, Known] = {}
        for batch_id in wanted:
            seen = conn.batches.get(batch_id)
            if seen is None:
                out[batch_id] = Known(None, None, stale=True)
            else:
                out[batch_id] = Known(seen[0], seen[1], stale=batch_id in conn.missed)
        return out

    async def _refresh(self, conn_id: str, conn: _Connection, wanted: frozenset[str], *, renew: bool) -> None:
        """Read ``wanted`` (less the batches known to be final); ``renew`` starts a new TTL period."""
        answers: dict[str, object] = {}
        problem = None
        to_read: list[str] = []
        try:
            hook = OpenAIBatchHook(conn_id)
            account = (await hook.aconfig()).identity
            if account != conn.account:  # a new connection, or it now points elsewhere: forget what it said
                conn.batches, conn.account = {}, account
            to_read = [i for i in wanted if i not in conn.batches or not _final(conn.batches[i][0])]
            if to_read:
                client = await hook.aclient()
                # How many pages to walk depends on how deep the oldest batch to read sits in the list, and
                # the final batches of this listing sit in front of it too: budget for all of them. (For
                # ``to_read`` alone, 400 in flight among 1,000 cost 7 pages + 120 single GETs a refresh.)
                budget = default_page_budget(len(wanted))
                reading = read_batches(client, to_read, page_budget=budget)
                answers = await asyncio.wait_for(reading, self.read_timeout)
        except TimeoutError:
            problem = f"Connection {conn_id!r}: the API did not answer within {self.read_timeout:g} s"
        except Exception as error:  # a missing connection, no key, a dead service: show what is known
            problem = f"Connection {conn_id!r}: could not read batches ({type(error).__name__}: {error})"
        if problem is not None and not to_read:
            to_read = [i for i in wanted if i not in conn.batches or not _final(conn.batches[i][0])]
        missed: set[str] = set()
        now = self.wall()
        for batch_id in to_read:
            answer = answers.get(batch_id)
            if isinstance(answer, Batch):
                conn.batches[batch_id] = (answer, now)
            else:
                missed.add(batch_id)
                if isinstance(answer, OpenAIAPIError) and problem is None:
                    problem = f"Connection {conn_id!r}: some batches could not be read ({answer})"
        if renew:
            conn.missed, conn.covered, conn.problem = frozenset(missed), wanted, problem
            conn.fresh_until = self.clock() + self.ttl
        else:
            conn.missed = (conn.missed - wanted) | missed
            conn.covered = conn.covered | wanted
            conn.problem = problem or conn.problem

    def expire(self) -> None:
        """Make the next request read the API again (tests; an operator who wants fresh data now)."""
        for conn in self._connections.values():
            conn.fresh_until = 0.0

    def remember(self, conn_id: str, batch: Batch) -> None:
        """Keep a state the app just received (the answer to a cancel) so the next page shows it."""
        conn = self._conn(conn_id)
        conn.batches[batch.id] = (batch, self.wall())
        conn.missed = conn.missed - {batch.id}
