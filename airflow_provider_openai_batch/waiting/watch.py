"""Watching a whole account for batches that end (floor 1: no Airflow).

The event trigger and the webhook receiver both decide "which batches just ended, and
what does their event say" here, so the two paths cannot drift and every rule is tested
without Airflow.

Why a watermark on creation time is not enough: the list endpoint returns batches newest
*created* first, but batches do not end in creation order (a large batch created hours
ago can end after a small one created a minute ago). So the state is two things:

- ``horizon``: the creation time of the oldest batch that was still running at the last
  complete look (or the newest batch seen, when nothing was running). Every batch that can
  still end was created at or after the horizon, so a poll pages newest first and stops at
  the first batch created before it. With 1,000 batches in flight that is
  ``ceil(1000 / 100)`` pages per poll, however many triggers watch.
- ``known``: the ids of batches at or after the horizon that already ended and were dealt
  with (fired, or found already ended when the watcher first started). A batch is fired
  only if it is terminal and not known, so nothing fires twice; an id is forgotten once
  its batch falls behind the horizon (it can never be listed again within the scan).

A first start with no saved state looks back ``lookback`` seconds: batches found already
ended are recorded as known, not fired (they ended before anyone was watching); batches
still running are watched from then on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openai_batch.api.models import Batch, BatchStatus, ListPage
from airflow_provider_openai_batch.waiting.polling import SHOWN_ERRORS

PAGE_SIZE = 100
"""The list endpoint's largest page: one request covers up to 100 batches."""
DEFAULT_LOOKBACK = 2 * 24 * 3600
"""How far a first start looks back: longer than any batch stays in flight (24 h window + finalizing)."""
KEEP_FIRED_SECONDS = 600
"""A fired id is kept this long even behind the horizon, longer than a webhook's 5-minute replay window."""
STATE_VERSION = 1

_END_STAMPS = {
    BatchStatus.COMPLETED: "completed_at",
    BatchStatus.FAILED: "failed_at",
    BatchStatus.EXPIRED: "expired_at",
    BatchStatus.CANCELLED: "cancelled_at",
}

ListPageFn = Callable[[str | None, int], Awaitable[ListPage[Batch]]]
"""``list_page(after, limit)``: one page of the list endpoint, newest first."""


def created_at(batch: Batch) -> int:
    """The batch's creation time in epoch seconds (0 when a service leaves it out)."""
    value = batch.created_at
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def matches(batch: Batch, metadata_filter: Mapping[str, str] | None) -> bool:
    """Every key of the filter is in the batch's metadata with an equal value (no filter: all)."""
    if not metadata_filter:
        return True
    metadata = batch.metadata or {}
    return all(metadata.get(key) == str(value) for key, value in metadata_filter.items())


def batch_event(batch: Batch) -> dict[str, Any]:
    """The payload of the asset event for a batch that ended: what a consumer needs, nothing secret.

    The same dict comes from the watcher and from the webhook receiver, so a consumer
    cannot tell (and need not care) which path saw the batch end.
    """
    errors = [e.model_dump(include={"code", "message", "param", "line"}) for e in batch.error_list]
    stamp = _END_STAMPS.get(batch.status)
    return {
        "batch_id": batch.id,
        "status": batch.status.value,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "request_counts": batch.request_counts.as_dict(),
        "errors": errors[:SHOWN_ERRORS],
        "metadata": dict(batch.metadata or {}),
        "completed_at": getattr(batch, stamp) if stamp else None,
    }


@dataclass(frozen=True)
class Snapshot:
    """One look at the account: the batches listed, newest first, down to where paging stopped."""

    batches: list[Batch]
    oldest: int | None
    """Creation time of the last batch listed (None when nothing was listed)."""
    exhausted: bool
    """The list ended: every batch the account has was listed."""
    pages: int = 1
    taken_at: float = 0.0
    proven: int | None = None
    """A ``since`` this look is complete for although it stopped on a batch created exactly then."""

    def covers(self, since: int) -> bool:
        """Every batch created at or after ``since`` that can matter was listed."""
        return self.exhausted or (self.oldest is not None and self.oldest < since) or self.proven == since


async def scan(
    list_page: ListPageFn,
    since: int,
    *,
    since_ids: frozenset[str] = frozenset(),
    page_size: int = PAGE_SIZE,
    taken_at: float = 0.0,
) -> Snapshot:
    """Page newest first until a batch created before ``since`` appears (or the list ends).

    ``since_ids`` are the batches created exactly at ``since`` that were still running at the
    last complete look: once all of them are listed the look is complete without one more
    page (so 1,000 batches in flight cost 10 requests, not 11).
    """
    batches: list[Batch] = []
    after: str | None = None
    pages = 0
    at_since: set[str] = set()
    while True:
        page = await list_page(after, page_size)
        pages += 1
        batches.extend(page.data)
        at_since.update(b.id for b in page.data if created_at(b) == since)
        if not page.data or not page.has_more:
            return Snapshot(batches, _oldest(batches), exhausted=True, pages=pages, taken_at=taken_at)
        last = created_at(page.data[-1])
        if last < since:
            return Snapshot(batches, _oldest(batches), exhausted=False, pages=pages, taken_at=taken_at)
        if last == since and since_ids and since_ids <= at_since:
            return Snapshot(batches, last, exhausted=False, pages=pages, taken_at=taken_at, proven=since)
        after = page.data[-1].id


def _oldest(batches: list[Batch]) -> int | None:
    return created_at(batches[-1]) if batches else None


@dataclass
class WatchState:
    """What one watcher remembers between polls (and, saved, across triggerer restarts)."""

    horizon: int | None = None
    known: dict[str, list[float]] = field(default_factory=dict)
    """batch id -> [created_at, dealt_with_at]."""
    horizon_ids: list[str] = field(default_factory=list)
    """Batches created exactly at the horizon that were running at the last complete look."""
    forgotten: list[str] = field(default_factory=list, compare=False)
    """Ids dropped from ``known`` since the caller last emptied this list (not saved)."""

    @property
    def started(self) -> bool:
        return self.horizon is not None

    def since(self, now: float, lookback: float = DEFAULT_LOOKBACK) -> int:
        """How deep the next scan must reach for this watcher."""
        return self.horizon if self.horizon is not None else int(now - lookback)

    def apply(
        self,
        snapshot: Snapshot,
        *,
        now: float,
        metadata_filter: Mapping[str, str] | None = None,
        lookback: float = DEFAULT_LOOKBACK,
    ) -> list[Batch]:
        """Take in one snapshot; return the batches that just ended and match (oldest end first).

        A first start records what already ended without returning it. A snapshot that did
        not reach this watcher's horizon (a sibling asked for less) still reports what it
        saw end, but cannot move the horizon: batches below what it listed stay unseen.
        """
        first = not self.started
        since = self.since(now, lookback)
        if first and not snapshot.covers(since):
            return []  # a baseline must see every batch that may still be running; wait for a deeper look
        ended: list[Batch] = []
        running: list[tuple[int, str]] = []
        newest: int | None = None
        for batch in snapshot.batches:
            created = created_at(batch)
            if created < since:
                continue
            newest = created if newest is None else max(newest, created)
            if not batch.status.is_terminal:
                running.append((created, batch.id))
                continue
            if batch.id in self.known:
                continue
            self.known[batch.id] = [created, now]
            if not first and matches(batch, metadata_filter):
                ended.append(batch)
        if snapshot.covers(since):
            if running:
                self.horizon = min(c for c, _ in running)
            elif newest is not None:
                self.horizon = newest
            else:
                self.horizon = since if first else self.horizon
            # Only a look taken after the horizon's second was over can vouch for all its batches.
            settled = snapshot.taken_at >= (self.horizon or 0) + 2
            self.horizon_ids = sorted(bid for c, bid in running if c == self.horizon) if settled else []
        self._forget_behind_horizon(now)
        ended.sort(key=lambda b: (getattr(b, _END_STAMPS.get(b.status, "completed_at")) or 0, b.id))
        return ended

    def _forget_behind_horizon(self, now: float) -> None:
        if self.horizon is None:
            return
        limit = now - KEEP_FIRED_SECONDS
        stale = [bid for bid, (created, at) in self.known.items() if created < self.horizon and at < limit]
        for batch_id in stale:
            del self.known[batch_id]
        self.forgotten.extend(stale)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "horizon": self.horizon, "known": self.known, "horizon_ids": self.horizon_ids}

    @classmethod
    def from_json(cls, value: Any) -> WatchState:
        """A saved state, or a fresh one when nothing (or something unreadable) was saved."""
        if not isinstance(value, dict) or value.get("version") != STATE_VERSION:
            return cls()
        horizon = value.get("horizon")
        known = value.get("known") or {}
        return cls(
            horizon=int(horizon) if horizon is not None else None,
            known={str(k): [float(v[0]), float(v[1])] for k, v in known.items()},
            horizon_ids=[str(i) for i in value.get("horizon_ids") or []],
        )
