"""The shared paged poller: every waiting trigger of one connection in a process, served by rounds.

Floor 1 (no Airflow). One waiting trigger used to send one ``GET /v1/batches/{id}`` per poll
interval, so N batches cost N requests per interval, and each request in flight kept some 70
objects alive across its latency, which is what made CPython's full collections frequent
at thousands of triggers. Here a trigger that is due calls :meth:`SharedPoller.get`; the
callers that arrive within a short window (and while a round is under way) make up the next
round, and one round reads their batches with list pages (up to 100 batches a request, see
:mod:`~airflow_provider_openai_batch.waiting.pages`), remembering on which page each batch
was, so the next round reads just those pages. A page also shows batches whose triggers are
not due yet: their state is kept, and a trigger that accepts a state ``max_age`` seconds old
(the trigger passes a third of its poll interval) is answered without a request. States are
kept as the JSON the API sent and parsed for the caller that asks (a kept model would be five
objects for CPython's collector, replaced every round: see
:mod:`~airflow_provider_openai_batch.api.raw_pages`).

Errors, decided for the group: the requests of a round are sent once each, and a round that
meets a rate limit or an outage stops sending, waits once for the whole group (``Retry-After``
honoured, the connection's retry policy otherwise) and tries again, so N waiting triggers do
not multiply retries. An authentication error (401, 403) ends the wait of every caller of
the round at once, with the error. A 404 for one batch goes to that batch's caller only.
A caller that is cancelled (a killed task, a triggerer shutting down) just leaves; the round,
which belongs to no caller, goes on for the others. Each trigger still decides when it is
due (its own poll interval and deadline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection
from time import monotonic

from airflow_provider_openai_batch.api.client import AsyncOpenAIBatchClient, ClientConfig
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.waiting.pages import (
    AUTH_STATUSES,
    PageMap,
    Reading,
    default_page_budget,
    parse_batch,
    read_batches,
)

__all__ = ["FRESH_SHARE", "SHARED_POLLERS", "SharedPoller", "read_batches", "shared_poller"]

log = logging.getLogger(__name__)

FRESH_SHARE = 1 / 3
"""A trigger accepts a state read up to this share of its poll interval ago, so that a page read for
its neighbours serves it too: at 60 s, a state at most 20 s old. A third, not a quarter: the first
poll is jittered by up to a fifth of the interval, so the triggers of one page (submitted together)
poll over about that span, and one read should cover them (trigger_scale at N = 1000: 17 requests
per interval with a quarter, for 10 pages)."""
WINDOW = 0.05
"""Seconds a round waits after its first caller, gathering the callers due at about the same time."""
FORGET_AFTER = 900.0
"""Seconds after its last ``get`` that a batch stops being watched (its trigger ended or moved)."""
TIDY_EVERY = 10.0
WALK_AHEAD = 20
"""Pages a round may walk beyond its budget to place batches it has not seen on a page yet."""
MAPPED_PER_WATCHED, MAPPED_SPARE = 4, 20_000
"""The page map also keeps where batches nobody waits for are, within this bound."""
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


class SharedPoller:
    """Answers ``get(batch_id)`` for all the triggers of one account in one event loop.

    Make it with :func:`shared_poller` (one per connection identity and loop). ``client``
    should send each request once (the poller retries for the group); ``retry`` is the
    connection's policy, applied once per round.
    """

    def __init__(
        self,
        client: AsyncOpenAIBatchClient,
        retry: RetryPolicy,
        *,
        window: float = WINDOW,
        page_budget: int | None = None,
    ) -> None:
        self.client = client
        self.retry = retry
        self.window = window
        self.page_budget = page_budget
        self.rounds = 0
        self._waiting: dict[str, list[asyncio.Future[Batch]]] = {}
        self._pages = PageMap()
        self._watch_until: dict[str, float] = {}
        self._state: dict[str, bytes] = {}
        self._read_at: dict[str, float] = {}
        self._longest_max_age = 0.0
        self._tidied = monotonic()
        self._runner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"SharedPoller(base_url={self.client.config.base_url!r}, watching={len(self._watch_until)})"

    @property
    def watching(self) -> int:
        """How many batches are watched (asked for in the last ``FORGET_AFTER`` seconds)."""
        return len(self._watch_until)

    async def get(self, batch_id: str, *, max_age: float = 0.0) -> Batch:
        """The batch's state, read no more than ``max_age`` seconds ago (0: read from now on).

        Raises what :meth:`AsyncOpenAIBatchClient.get_batch` raises (an ``OpenAIAPIError``),
        after the group's retries.
        """
        now = monotonic()
        self._watch_until[batch_id] = now + max(FORGET_AFTER, 8 * max_age)
        if max_age > 0:
            self._longest_max_age = max(self._longest_max_age, max_age)
            read_at = self._read_at.get(batch_id)
            if read_at is not None and now - read_at <= max_age:
                return _batch_or_raise(self._state[batch_id])
        future: asyncio.Future[Batch] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(batch_id, []).append(future)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run_rounds())
        try:
            return await future
        except asyncio.CancelledError:
            self._leave(batch_id, future)
            raise

    def _leave(self, batch_id: str, future: asyncio.Future[Batch]) -> None:
        """A cancelled caller: out of the round; its batch is no longer watched if nobody else waits."""
        waiters = self._waiting.get(batch_id)
        if waiters is not None and future in waiters:
            waiters.remove(future)
            if not waiters:
                del self._waiting[batch_id]
        if batch_id not in self._waiting:
            self._forget(batch_id)

    def _forget(self, batch_id: str) -> None:
        for table in (self._watch_until, self._state, self._read_at):
            table.pop(batch_id, None)

    # Rounds

    async def _run_rounds(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.window)
            try:
                await self._round()
            except Exception as error:  # a bug must not leave triggers waiting forever
                log.exception("The shared poll failed")
                self._fail(list(self._waiting), error)
            self._tidy()

    async def _round(self) -> None:
        self.rounds += 1
        attempt = 0
        wanted: Collection[str] = list(self._waiting)
        while wanted:
            attempt += 1
            reading = Reading(
                self.client,
                wanted,
                page_budget=self._budget(wanted),
                pages=self._pages,
                watched=EVERY_BATCH,
                notice=self._notice,
            )
            await reading.run()
            stopped = reading.stopped
            for batch_id, error in reading.errors.items():
                if error is not stopped:
                    self._fail([batch_id], error)
            if stopped is None:
                return
            if getattr(stopped, "status_code", None) in AUTH_STATUSES:
                self._fail(list(self._waiting), stopped)  # the key is refused: for every caller of the connection
                return
            if attempt >= self.retry.max_attempts or not self.retry.should_retry(stopped):
                self._fail([i for i in wanted if i in self._waiting], stopped)
                return
            delay = self.retry.delay(stopped, attempt - 1)
            log.warning(
                "Polling %d batches again in %.1fs (attempt %d of %d, for all of them) after: %s",
                len(self._waiting),
                delay,
                attempt + 1,
                self.retry.max_attempts,
                stopped,
            )
            await asyncio.sleep(delay)
            wanted = list(self._waiting)  # those still waiting, and those who arrived meanwhile

    def _budget(self, wanted: Collection[str]) -> int:
        """Pages for this round: one per 100 wanted and a few spare; more while some are still
        unplaced (a triggerer that just started): pages read once are mapped, and later walks hop
        over them, so walking deeper once is cheaper than a GET per batch every round."""
        if self.page_budget is not None:
            return self.page_budget
        unplaced = any(not self._pages.placed(batch_id) for batch_id in wanted)
        return default_page_budget(len(wanted)) + (WALK_AHEAD if unplaced else 0)

    def _notice(self, batch_id: str, raw: bytes) -> None:
        """A batch was read: keep its JSON and answer whoever waits for it (parsed once for them)."""
        self._state[batch_id] = raw
        self._read_at[batch_id] = monotonic()
        waiters = self._waiting.pop(batch_id, ())
        if not waiters:
            return
        answer = parse_batch(raw)
        for future in waiters:
            if future.done():
                continue
            if isinstance(answer, Batch):
                future.set_result(answer)
            else:
                future.set_exception(answer)

    def _fail(self, batch_ids: Collection[str], error: BaseException) -> None:
        for batch_id in batch_ids:
            for future in self._waiting.pop(batch_id, ()):
                if not future.done():
                    future.set_exception(error)

    def _tidy(self) -> None:
        """Now and then: drop states too old to serve anyone and batches nobody asked for lately."""
        now = monotonic()
        if now - self._tidied < TIDY_EVERY:
            return
        self._tidied = now
        oldest = now - self._longest_max_age
        for batch_id in [i for i, at in self._read_at.items() if at < oldest]:
            del self._read_at[batch_id], self._state[batch_id]
        for batch_id in [i for i, until in self._watch_until.items() if until < now]:
            self._forget(batch_id)
        if len(self._pages.position) > MAPPED_PER_WATCHED * len(self._watch_until) + MAPPED_SPARE:
            self._pages.keep_only(self._watch_until)


def _batch_or_raise(raw: bytes) -> Batch:
    answer = parse_batch(raw)
    if isinstance(answer, Batch):
        return answer
    raise answer


class _Every:
    """Contains every batch id: a page's batches are all kept for a while (a trigger may be due soon)."""

    def __contains__(self, batch_id: object) -> bool:
        return True


EVERY_BATCH = _Every()


class _Pollers:
    """One :class:`SharedPoller` per event loop and connection identity (like the shared pools)."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, dict[str, SharedPoller]] = {}

    def get(self, config: ClientConfig) -> SharedPoller:
        loop = asyncio.get_running_loop()
        for closed in [other for other in self._by_loop if other.is_closed()]:
            del self._by_loop[closed]
        pollers = self._by_loop.setdefault(loop, {})
        poller = pollers.get(config.identity)
        if poller is None:
            once = AsyncOpenAIBatchClient.shared(dataclasses.replace(config, retry=ONE_ATTEMPT))
            poller = pollers[config.identity] = SharedPoller(once, config.retry)
        return poller


SHARED_POLLERS = _Pollers()


def shared_poller(config: ClientConfig) -> SharedPoller:
    """The poller every trigger of ``config``'s account shares in the running loop."""
    return SHARED_POLLERS.get(config)
