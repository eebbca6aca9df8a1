"""Read many batches in few requests: list pages first, single GETs for the rest (floor 1: no Airflow).

``GET /v1/batches?limit=100`` answers for up to 100 batches at once, newest first, and the
``after=<batch id>`` cursor names a page that never changes: the 100 batches created just
before that batch (new batches only ever join the front of the list). So a reader that
remembers on which page ("after which cursor") it last saw a batch can read that page again
directly, without walking the newer pages in front of it. :func:`read_batches` is the
stateless form (walk from the front); :class:`Reading` also takes and updates that map, for
the shared poller (:mod:`airflow_provider_openai_batch.waiting.poller`).

When to stop sending: an error that asking again later may fix (429, 5xx, transport) or an
authentication error stops the reading at once, and every batch not read yet gets that
error: sending more requests into a rate limit or with a rejected key only makes it worse.
A list page refused for another reason (400, 404, 405: an OpenAI-compatible service whose
list endpoint differs) is not fatal: the batches are then read one by one.

A reading keeps each batch as the JSON the API sent (:mod:`~airflow_provider_openai_batch.api.raw_pages`
says why) and builds :class:`Batch` models only for the answers asked for.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Collection, Container, Iterable, Iterator

from airflow_provider_openai_batch.api.client import AsyncOpenAIBatchClient
from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import Batch

PAGE_SIZE = 100
"""The largest page the list endpoint serves."""
EXTRA_PAGES = 3
"""Pages allowed beyond ``ceil(ids / 100)``: room for other batches created between ours."""
GET_CONCURRENCY = 8
"""Single GETs in flight at once when pages did not find every batch."""
AUTH_STATUSES = frozenset({401, 403})

Answer = Batch | Exception
"""What a reading gives for one batch id: the batch, or the error that kept it from being read."""
Notice = Callable[[str, bytes], None]
"""Told ``(batch id, the batch's JSON)`` for each batch read that is wanted or watched."""
FRONT = ""
"""The cursor of the first (newest) page: no ``after``. It is the one page whose content shifts."""
END = "\0end"
"""The "next page" of the last page."""


def parse_batch(raw: bytes) -> Answer:
    """The batch in ``raw``, or the ``ValueError`` saying why it is none (this id's problem only)."""
    try:
        return Batch.model_validate_json(raw)
    except ValueError as error:
        return error


def default_page_budget(count: int) -> int:
    """Pages worth reading for ``count`` batches: one per 100, plus a few for batches of others in between."""
    return math.ceil(count / PAGE_SIZE) + EXTRA_PAGES


def stops_reading(error: OpenAIAPIError) -> bool:
    """An error after which no further request of this reading should be sent."""
    return error.is_transient or error.status_code in AUTH_STATUSES


class PageMap:
    """Where batches were seen: batch id -> the cursor of its page, and page cursor -> the next page's.

    Every batch of every page read is filed (not only the ones asked for), so a batch whose
    trigger arrives later is already placed, and a walk from the front can hop over pages it
    has mapped before without reading them again. Only the front page is read every time
    (new batches push older ones back from it).
    """

    def __init__(self) -> None:
        self.position: dict[str, str] = {}
        self.next_page: dict[str, str] = {}

    def file(self, cursor: str, ids: list[str], following: str) -> None:
        for batch_id in ids:
            self.position[batch_id] = cursor
        if cursor != FRONT:
            self.next_page[cursor] = following

    def placed(self, batch_id: str) -> bool:
        return self.position.get(batch_id, FRONT) != FRONT

    def keep_only(self, batch_ids: Container[str]) -> None:
        """Forget every position but those of ``batch_ids`` (and the page chain): a bound on memory."""
        self.position = {i: cursor for i, cursor in self.position.items() if i in batch_ids}
        self.next_page.clear()


class Reading:
    """One pass over the API for a set of batch ids; ``found`` and ``errors`` hold the answers.

    ``pages`` (a :class:`PageMap`, read and updated) says where batches were seen: a batch
    with a known page is read from it; the others by walking from the front, within
    ``page_budget`` page requests in all. ``notice`` is called with the id and JSON of each
    batch read that is wanted or ``watched`` (ids whose state is worth having when a page happens
    to show them), as soon as its page or GET arrives. ``found`` keeps the JSON of each wanted
    batch; :meth:`answers` parses them.
    """

    def __init__(
        self,
        client: AsyncOpenAIBatchClient,
        wanted: Collection[str],
        *,
        page_budget: int | None = None,
        pages: PageMap | None = None,
        watched: Container[str] = (),
        notice: Notice | None = None,
        concurrency: int = GET_CONCURRENCY,
    ) -> None:
        self.client = client
        self.wanted = set(wanted)
        self.page_budget = default_page_budget(len(self.wanted)) if page_budget is None else page_budget
        self.map = PageMap() if pages is None else pages
        self.watched = watched
        self.notice = notice
        self.concurrency = max(1, concurrency)
        self.found: dict[str, bytes] = {}
        self.errors: dict[str, Exception] = {}
        self.stopped: OpenAIAPIError | None = None
        """The error that ended the reading early (every id left unread got it)."""
        self.page_requests = 0
        self.get_requests = 0
        self._pages_read: set[str] = set()
        self._list_refused = False

    def answers(self) -> dict[str, Answer]:
        """Per id: the batch (parsed now), or the error that kept it from being read or parsed."""
        return {**self.errors, **{batch_id: parse_batch(raw) for batch_id, raw in self.found.items()}}

    @property
    def missing(self) -> set[str]:
        return self.wanted - self.found.keys() - self.errors.keys()

    async def run(self) -> Reading:
        await self._walk_from_front()
        await self._read_known_pages()
        await self._get_one_by_one()
        if self.stopped is not None:
            for batch_id in self.missing:
                self.errors[batch_id] = self.stopped
        return self

    # Pages

    async def _page(self, cursor: str) -> str | None:
        """Read one list page and file its batches; the next page's cursor (END after the last)."""
        self.page_requests += 1
        try:
            page = await self.client.list_batches_json(after=cursor or None, limit=PAGE_SIZE)
        except OpenAIAPIError as error:
            if stops_reading(error):
                self.stopped = self.stopped or error
            else:
                self._list_refused = True
            return None
        except ValueError:  # a list body of another shape (msgspec's ValidationError): read one by one
            self._list_refused = True
            return None
        self._pages_read.add(cursor)
        ids = [batch_id for batch_id, _ in page.items]
        following = ids[-1] if page.has_more and ids else END
        self.map.file(cursor, ids, following)
        for batch_id, raw in page.items:
            if batch_id in self.wanted:
                self.found[batch_id] = raw
            elif batch_id not in self.watched:
                continue
            if self.notice is not None:
                self.notice(batch_id, raw)
        return following

    def _can_read_pages(self) -> bool:
        return self.stopped is None and not self._list_refused and self.page_requests < self.page_budget

    async def _walk_from_front(self) -> None:
        """Newest first until every id without a known page is seen, hopping over pages mapped before."""
        if not any(not self.map.placed(i) for i in self.missing):
            return
        cursor: str | None = FRONT
        while self._can_read_pages() and any(not self.map.placed(i) for i in self.missing):
            cursor = await self._page(cursor)
            hopped: set[str] = set()
            while cursor in self.map.next_page and cursor not in hopped:  # mapped: no unplaced batch is on it
                hopped.add(cursor)
                cursor = self.map.next_page[cursor]
            if cursor is None or cursor == END or cursor in hopped:
                return  # failed, the last page, or a service whose cursor goes round in a circle

    async def _read_known_pages(self) -> None:
        """The remembered page of each id still missing, the pages serving the most ids first."""
        by_page: dict[str, int] = {}
        for batch_id in self.missing:
            if self.map.placed(batch_id):
                cursor = self.map.position[batch_id]
                by_page[cursor] = by_page.get(cursor, 0) + 1
        order = sorted(by_page, key=by_page.__getitem__, reverse=True)
        await self._bounded(self._page(cursor) for cursor in order if self._can_read_pages())
        if self.stopped is None:
            for batch_id in self.missing:  # not on the page it was on (gone?): found by id, placed afresh
                if self.map.position.get(batch_id) in self._pages_read:
                    del self.map.position[batch_id]

    # Single GETs

    async def _get_one_by_one(self) -> None:
        async def get(batch_id: str) -> None:
            if self.stopped is not None:
                return
            self.get_requests += 1
            try:
                raw = await self.client.get_batch_json(batch_id)
            except OpenAIAPIError as error:
                if stops_reading(error):
                    self.stopped = self.stopped or error
                else:
                    self.errors[batch_id] = error
                return
            self.found[batch_id] = raw  # a body that is no batch fails when parsed: this id's problem only
            if self.notice is not None:
                self.notice(batch_id, raw)

        await self._bounded(get(batch_id) for batch_id in sorted(self.missing))

    async def _bounded(self, jobs: Iterable[object]) -> None:
        """Run the coroutines ``concurrency`` at a time; a stop error lets the rest return at once."""
        pending: Iterator[object] = iter(jobs)

        async def worker() -> None:
            for job in pending:
                await job  # type: ignore[misc]

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))


async def read_batches(
    client: AsyncOpenAIBatchClient,
    batch_ids: Collection[str],
    *,
    page_budget: int | None = None,
    concurrency: int = GET_CONCURRENCY,
) -> dict[str, Answer]:
    """The current state of every batch in ``batch_ids``, in about one request per 100 recent batches.

    Reads list pages newest first (``after=`` cursor) until every id has been seen or
    ``page_budget`` pages are spent (default ``ceil(len(batch_ids) / 100) + 3``), then GETs the
    rest, ``concurrency`` at a time. Returns, per id, the :class:`Batch` or the error
    (usually an :class:`OpenAIAPIError`) that kept it from being read (a 404 for an unknown id; the
    rate-limit, outage or authentication error that stopped the reading for every id not read
    by then). Each request goes through ``client``'s own retry policy.
    """
    reading = Reading(client, batch_ids, page_budget=page_budget, concurrency=concurrency)
    return (await reading.run()).answers()
