"""OpenAIBatchEventTrigger against the fake server over real loopback HTTP.

The asset state store is the one thing here that is not Airflow's own: the triggerer injects it
and only a running triggerer has the supervisor channel behind it, so a dict-backed stand-in with
the same async methods plays it. The triggerer itself is exercised by ``make test-events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_openai_batch import OpenAIBatchEventTrigger
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook, forget_recent_connections
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.triggers import events as events_module
from airflow_provider_openai_batch.triggers.events import MARKER_PREFIX, STATE_KEY
from tests.helpers import API_KEY, CHAT, LIFETIME, ManualClock, chat_line

CONN_ID = "openai_events_test"
LOOK_BACK_EVERYTHING = 10**10


class FakeAccessor:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))

    async def adelete(self, key: str) -> None:
        self.values.pop(key, None)


class FakeStore:
    def __init__(self) -> None:
        self._by_name = {"nightly": FakeAccessor()}
        self._by_uri: dict[str, FakeAccessor] = {}

    @property
    def values(self) -> dict[str, Any]:
        return self._by_name["nightly"].values


@pytest.fixture
def conn(server: FakeOpenAIServer, monkeypatch) -> str:
    conn = {"conn_type": "openai_batch", "host": server.url, "password": API_KEY, "extra": {"max_retries": 0}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    monkeypatch.setattr(events_module, "SAVE_DELAY", 0.0)
    monkeypatch.setattr(events_module, "EVENT_SPACING", 0.0)
    forget_recent_connections()
    return CONN_ID


def submit(conn: str, tmp_path: Path, count: int, metadata: dict[str, str]) -> list[str]:
    hook = OpenAIBatchHook(conn)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(chat_line("q-0")) + "\n")
    file_id = hook.upload_file(path).id
    return [hook.create_batch(file_id, CHAT, metadata=metadata).id for _ in range(count)]


def trigger(conn: str, store: FakeStore | None, **kwargs: Any) -> OpenAIBatchEventTrigger:
    # The fake's clock is a manual one far from the wall clock: look back over all of it.
    made = OpenAIBatchEventTrigger(conn_id=conn, poll_interval=0.01, lookback=LOOK_BACK_EVERYTHING, **kwargs)
    made.asset_state_store = store
    return made


class Pump:
    """Runs an event generator in a task so a test can wait for events or for silence."""

    def __init__(self, events: AsyncIterator[Any]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(events))

    async def _run(self, events: AsyncIterator[Any]) -> None:
        async for event in events:
            await self.queue.put(event.payload)

    async def take(self, count: int) -> list[dict[str, Any]]:
        return [await asyncio.wait_for(self.queue.get(), timeout=10) for _ in range(count)]

    async def quiet(self, seconds: float = 0.3) -> bool:
        """True when nothing fires for ``seconds`` (the poll runs every 0.01 s)."""
        await asyncio.sleep(seconds)
        if self.task.done():
            self.task.result()
        return self.queue.empty()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def test_serialize_holds_only_the_connection_id_and_settings():
    made = OpenAIBatchEventTrigger("openai_x", {"pipeline": "p"}, poll_interval=30)
    path, kwargs = made.serialize()
    assert path == "airflow_provider_openai_batch.triggers.events.OpenAIBatchEventTrigger"
    assert kwargs == {
        "conn_id": "openai_x",
        "metadata_filter": {"pipeline": "p"},
        "poll_interval": 30.0,
        "lookback": kwargs["lookback"],
    }
    assert OpenAIBatchEventTrigger(**kwargs).serialize() == (path, kwargs)


def test_watchers_of_one_connection_and_interval_share_a_stream_key():
    a = OpenAIBatchEventTrigger("c", {"pipeline": "a"}, poll_interval=30)
    b = OpenAIBatchEventTrigger("c", {"pipeline": "b"}, poll_interval=30)
    assert a.shared_stream_key() == b.shared_stream_key()
    assert a.shared_stream_key() != OpenAIBatchEventTrigger("other", poll_interval=30).shared_stream_key()


def test_fires_each_ended_batch_once_and_resumes_after_a_restart(conn, server, clock: ManualClock, tmp_path):
    ids = submit(conn, tmp_path, 3, {"pipeline": "nightly"})
    submit(conn, tmp_path, 1, {"pipeline": "other"})
    store = FakeStore()

    async def first_life() -> list[dict[str, Any]]:
        events = Pump(trigger(conn, store, metadata_filter={"pipeline": "nightly"}).run())
        assert await events.quiet(), "nothing has ended yet"
        OpenAIBatchHook(conn).cancel_batch(ids[0])
        clock.advance(LIFETIME + 1)  # everything else completes; ids[0] becomes cancelled
        got = await events.take(3)
        assert await events.quiet()
        await events.close()
        return got

    fired = asyncio.run(first_life())
    assert sorted(e["batch_id"] for e in fired) == sorted(ids)
    by_id = {e["batch_id"]: e for e in fired}
    assert by_id[ids[0]]["status"] == "cancelled" and by_id[ids[1]]["status"] == "completed"
    assert by_id[ids[1]]["request_counts"] == {"total": 1, "completed": 1, "failed": 0}
    assert by_id[ids[1]]["output_file_id"] and by_id[ids[1]]["metadata"] == {"pipeline": "nightly"}
    assert store.values[STATE_KEY]["horizon"] is not None
    assert all(MARKER_PREFIX + i in store.values for i in ids)

    later = submit(conn, tmp_path, 2, {"pipeline": "nightly"})

    async def second_life() -> list[dict[str, Any]]:
        events = Pump(trigger(conn, store, metadata_filter={"pipeline": "nightly"}).run())
        clock.advance(LIFETIME + 1)  # both end while "the triggerer is down", before the first poll
        got = await events.take(2)
        assert await events.quiet(), "nothing of the first life fires again"
        await events.close()
        return got

    assert sorted(e["batch_id"] for e in asyncio.run(second_life())) == sorted(later)


def test_a_batch_the_webhook_already_fired_is_not_fired_again(conn, server, clock: ManualClock, tmp_path):
    store = FakeStore()

    async def scenario() -> tuple[list[dict[str, Any]], bool, list[str]]:
        events = Pump(trigger(conn, store).run())
        assert await events.quiet()
        ids = submit(conn, tmp_path, 2, {"pipeline": "nightly"})
        assert await events.quiet()
        store.values[MARKER_PREFIX + ids[0]] = {"at": 1.0, "by": "webhook"}
        clock.advance(LIFETIME + 1)
        got = await events.take(1)
        silent = await events.quiet()
        await events.close()
        return got, silent, ids

    got, silent, ids = asyncio.run(scenario())
    assert [e["batch_id"] for e in got] == [ids[1]] and silent


def test_shared_stream_feeds_each_watcher_its_own_batches(conn, server, clock: ManualClock, tmp_path):
    a_ids = submit(conn, tmp_path, 2, {"pipeline": "a"})
    b_ids = submit(conn, tmp_path, 1, {"pipeline": "b"})
    kwargs = {"conn_id": conn, "poll_interval": 0.01, "lookback": LOOK_BACK_EVERYTHING}
    watcher_a = trigger(conn, FakeStore(), metadata_filter={"pipeline": "a"})
    watcher_b = trigger(conn, FakeStore(), metadata_filter={"pipeline": "b"})

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        snapshots: list[Any] = []
        stream = OpenAIBatchEventTrigger.open_shared_stream(kwargs)
        snapshots.append(await stream.__anext__())  # baseline look: nothing ended yet
        clock.advance(LIFETIME + 1)
        snapshots.append(await stream.__anext__())
        await stream.aclose()

        async def replay() -> AsyncIterator[Any]:
            for snapshot in snapshots:
                yield snapshot

        got_a = [e.payload async for e in watcher_a.filter_shared_stream(replay())]
        got_b = [e.payload async for e in watcher_b.filter_shared_stream(replay())]
        return got_a, got_b, sum(s.pages for s in snapshots)

    got_a, got_b, pages = asyncio.run(scenario())
    assert sorted(e["batch_id"] for e in got_a) == sorted(a_ids)
    assert [e["batch_id"] for e in got_b] == b_ids
    assert pages == 2, "one request per look, shared by both watchers"


def test_api_errors_are_waited_out(conn, server, clock: ManualClock, tmp_path):
    ids = submit(conn, tmp_path, 1, {"pipeline": "nightly"})

    async def scenario() -> list[dict[str, Any]]:
        events = Pump(trigger(conn, None).run())
        assert await events.quiet()
        server.go_down()
        clock.advance(LIFETIME + 1)
        assert await events.quiet(), "a refused connection ends nothing"
        server.come_back()
        got = await events.take(1)
        await events.close()
        return got

    assert [e["batch_id"] for e in asyncio.run(scenario())] == ids
