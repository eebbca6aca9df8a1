"""OpenAIBatchEventTrigger: one watcher for a connection's whole fleet, for ``AssetWatcher`` (floor 3).

Thin: what to list, what ended, what fires and what is remembered is decided in
``waiting/watch.py``; this module only wires it to Airflow.

On Airflow 3.3 every watcher of the same connection and poll interval shares one poll
(Airflow's shared stream): the poll pages the list endpoint newest first down to the
deepest horizon any of them needs, and each watcher picks its own batches from that one
look. Each watcher's state (horizon, known ids) is saved in its asset's state store a few
seconds after it fires, once the triggerer has stored the events, so a restart resumes
where it stopped: a batch that ended while the triggerer was down fires after the
restart, and one that fired before it does not fire again. (A hard kill within those few
seconds can fire the last events once more: the state is saved after the events, never
before, so the failure mode is a repeat, never a miss.)

Before Airflow 3.3 (no shared stream, no state store) each watcher runs its own loop and
keeps its state in memory: a restart starts afresh, so a batch that ended while no
triggerer ran is not fired (it is recorded as already ended), and nothing fires twice.

Cross-path: before firing a batch the watcher looks for the marker the webhook receiver
(or a sibling watcher path) leaves in the asset's state store, and leaves one itself, so
a batch seen by both a webhook and a poll starts one consumer run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any

from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.transient import is_transient
from airflow_provider_openai_batch.compat import (
    SUPPORTS_SHARED_EVENT_STREAMS,
    BaseEventTrigger,
    TriggerEvent,
    log_degraded,
)
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook
from airflow_provider_openai_batch.waiting.watch import (
    DEFAULT_LOOKBACK,
    Snapshot,
    WatchState,
    batch_event,
    scan,
)

STATE_KEY = "openai_batch.watch"
"""The asset state store key holding a watcher's :class:`WatchState`."""
MARKER_PREFIX = "openai_batch.fired."
"""``MARKER_PREFIX + batch_id``: set in the asset's state store once that batch's event was emitted."""
SAVE_DELAY = 5.0
"""Seconds between firing and saving the state: the triggerer stores events within a second or two."""
EVENT_SPACING = 2.0
"""Seconds between two events of one look. Airflow 3.3.2's scheduler turns the queued events of an
asset into one run and then clears the queue: an event stored a moment after the run was made (within
its ~1 s loop) is left for the next run of that asset, i.e. until another batch ends. Spacing the
events of a burst lets each start its own run."""

# Shared-poll bookkeeping (one triggerer process): stream key -> subscriber -> (since, ids at since).
_needs: dict[Hashable, dict[int, tuple[int, frozenset[str]]]] = {}


class OpenAIBatchEventTrigger(BaseEventTrigger):
    """Fires one event per batch of ``conn_id`` that ends (completed, failed, expired, cancelled).

    :param conn_id: the ``openai_batch`` connection (only its id is serialized, never the key).
    :param metadata_filter: only batches whose metadata has all these key/value pairs fire,
        e.g. ``{"pipeline": "nightly_eval"}``.
    :param poll_interval: seconds between looks at the list endpoint.
    :param lookback: how far a first start (no saved state) looks back for batches in flight.

    The event payload (and so the asset event's ``extra["payload"]``) is ``batch_id``,
    ``status``, ``output_file_id``, ``error_file_id``, ``request_counts``, ``errors`` (first
    few), ``metadata``, ``completed_at``.
    """

    def __init__(
        self,
        conn_id: str = OpenAIBatchHook.default_conn_name,
        metadata_filter: dict[str, str] | None = None,
        poll_interval: float = 60.0,
        lookback: float = DEFAULT_LOOKBACK,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.metadata_filter = {str(k): str(v) for k, v in (metadata_filter or {}).items()}
        self.poll_interval = float(poll_interval)
        self.lookback = float(lookback)
        self._state = WatchState()

    @property
    def log(self) -> Any:
        return type(self).logger()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "metadata_filter": self.metadata_filter,
                "poll_interval": self.poll_interval,
                "lookback": self.lookback,
            },
        )

    # Airflow 3.3: one poll per connection and interval -----------------------------------------

    def shared_stream_key(self) -> Hashable | None:
        return ("openai_batch.events", self.conn_id, self.poll_interval)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        conn_id = kwargs.get("conn_id") or OpenAIBatchHook.default_conn_name
        interval = float(kwargs.get("poll_interval") or 60.0)
        key = ("openai_batch.events", conn_id, interval)
        fallback = float(kwargs.get("lookback") or DEFAULT_LOOKBACK)
        hook = OpenAIBatchHook(conn_id)
        while True:
            since, ids = _deepest_need(key, time.time() - fallback)
            snapshot = await _look(hook, since, ids, cls.logger())
            if snapshot is not None:
                yield snapshot
            await asyncio.sleep(interval)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        await self._load()
        key = self.shared_stream_key()
        self._register(key)
        try:
            async for snapshot in shared_stream:
                async for event in self._take(snapshot):
                    yield event
                self._register(key)
        finally:
            _needs.get(key, {}).pop(id(self), None)

    # Own loop: Airflow before 3.3 (and any watcher the triggerer runs without sharing) ---------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if not SUPPORTS_SHARED_EVENT_STREAMS:
            log_degraded(
                "sharing one poll between OpenAI batch watchers and saving their state",
                "3.3",
                "each watcher polls on its own and a restart starts afresh (batches that ended while no "
                "triggerer ran are not fired)",
                self.log,
            )
        await self._load()
        hook = OpenAIBatchHook(self.conn_id)
        while True:
            started = time.monotonic()
            state = self._state
            since = state.since(time.time(), self.lookback)
            snapshot = await _look(hook, since, frozenset(state.horizon_ids), self.log)
            if snapshot is not None:
                async for event in self._take(snapshot):
                    yield event
            await asyncio.sleep(max(0.0, self.poll_interval - (time.monotonic() - started)))

    # One snapshot in, events out ---------------------------------------------------------------

    async def _take(self, snapshot: Snapshot) -> AsyncIterator[TriggerEvent]:
        state = self._state
        before = state.to_json()
        ended = state.apply(snapshot, now=time.time(), metadata_filter=self.metadata_filter, lookback=self.lookback)
        fired = 0
        for batch in ended:
            if await self._fired_elsewhere(batch):
                continue
            if fired:
                await asyncio.sleep(EVENT_SPACING)
            self.log.info("Batch %s ended (%s): firing", batch.id, batch.status.value)
            yield TriggerEvent(batch_event(batch))
            fired += 1
            await self._mark_fired(batch)
        forgotten, state.forgotten = state.forgotten, []
        if state.to_json() != before:
            if fired:
                await asyncio.sleep(SAVE_DELAY)  # let the triggerer store the events first: repeat, never miss
            await self._save(forgotten)

    def _register(self, key: Hashable) -> None:
        state = self._state
        _needs.setdefault(key, {})[id(self)] = (state.since(time.time(), self.lookback), frozenset(state.horizon_ids))

    # The asset state store (Airflow 3.3 watchers); absent: memory only -------------------------

    def _accessors(self) -> list[Any]:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return []
        # A trigger shared by several assets (equal kwargs) gets one accessor per asset.
        return [*getattr(store, "_by_name", {}).values(), *getattr(store, "_by_uri", {}).values()]

    async def _load(self) -> None:
        for accessor in self._accessors():
            try:
                saved = await accessor.aget(STATE_KEY)
            except Exception as error:
                self.log.warning("Could not read the saved watch state (starting afresh): %s", error)
                continue
            state = WatchState.from_json(saved)
            if state.started:
                self._state = state
                self.log.info("Resuming the watch of %s from horizon %s", self.conn_id, state.horizon)
                return

    async def _save(self, forgotten: list[str]) -> None:
        value = self._state.to_json()
        for accessor in self._accessors():
            try:
                await accessor.aset(STATE_KEY, value)
                for batch_id in forgotten:
                    await accessor.adelete(MARKER_PREFIX + batch_id)
            except Exception as error:
                self.log.warning("Could not save the watch state (will retry next poll): %s", error)

    async def _fired_elsewhere(self, batch: Batch) -> bool:
        for accessor in self._accessors():
            try:
                if await accessor.aget(MARKER_PREFIX + batch.id) is not None:
                    self.log.info("Batch %s already fired by the webhook receiver: not firing again", batch.id)
                    return True
            except Exception as error:
                self.log.warning("Could not read the fired marker of %s: %s", batch.id, error)
        return False

    async def _mark_fired(self, batch: Batch) -> None:
        for accessor in self._accessors():
            try:
                await accessor.aset(MARKER_PREFIX + batch.id, {"at": time.time(), "by": "watcher"})
            except Exception as error:
                self.log.warning("Could not mark %s as fired: %s", batch.id, error)


def _deepest_need(key: Hashable, fallback: float) -> tuple[int, frozenset[str]]:
    needs = list(_needs.get(key, {}).values())
    if not needs:
        return int(fallback), frozenset()
    return min(needs, key=lambda need: need[0])


async def _look(hook: OpenAIBatchHook, since: int, ids: frozenset[str], log: Any) -> Snapshot | None:
    """One scan; API errors are the weather: logged, and the watch goes on at the next poll."""

    async def list_page(after: str | None, limit: int) -> Any:
        return await hook.alist_batches(after=after, limit=limit)

    try:
        return await scan(list_page, since, since_ids=ids, taken_at=time.time())
    except Exception as error:
        if is_transient(error):
            log.warning("Listing batches of %s failed (will retry next poll): %s", hook.conn_id, error)
        else:
            log.error("Listing batches of %s failed (check the connection; will retry): %s", hook.conn_id, error)
        return None
