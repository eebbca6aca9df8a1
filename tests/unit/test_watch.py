"""The fleet watch logic (floor 1): paging depth, fire once, restarts, late finishers, filters."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from airflow_provider_openai_batch.api.models import Batch, ListPage
from airflow_provider_openai_batch.waiting.watch import (
    KEEP_FIRED_SECONDS,
    Snapshot,
    WatchState,
    batch_event,
    matches,
    scan,
)

NOW = 1_800_000_000


class Account:
    """An in-memory batch list answering like the list endpoint: newest created first, paged by id."""

    def __init__(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        self.requests = 0

    def add(self, batch_id: str, created: int, status: str = "in_progress", **fields: Any) -> None:
        self.batches[batch_id] = {"id": batch_id, "created_at": created, "status": status, **fields}

    def end(self, batch_id: str, status: str = "completed", at: int = NOW) -> None:
        self.batches[batch_id].update(status=status, **{f"{status}_at": at}, output_file_id=f"file-{batch_id}")

    async def list_page(self, after: str | None, limit: int) -> ListPage[Batch]:
        self.requests += 1
        ordered = sorted(self.batches.values(), key=lambda b: (b["created_at"], b["id"]), reverse=True)
        if after is not None:
            ids = [b["id"] for b in ordered]
            ordered = ordered[ids.index(after) + 1 :]
        page = [Batch.model_validate(b) for b in ordered[:limit]]
        return ListPage[Batch](data=page, has_more=len(ordered) > limit)

    def look(self, since: int, since_ids: frozenset[str] = frozenset(), now: float = NOW) -> Snapshot:
        return asyncio.run(scan(self.list_page, since, since_ids=since_ids, taken_at=now))


def poll(account: Account, state: WatchState, now: float = NOW, **kwargs: Any) -> list[str]:
    snapshot = account.look(state.since(now), frozenset(state.horizon_ids), now)
    return [b.id for b in state.apply(snapshot, now=now, **kwargs)]


def test_scan_stops_at_the_first_page_reaching_below_since():
    account = Account()
    for i in range(250):
        account.add(f"b{i:03d}", created=NOW - 1000 + i)
    snapshot = account.look(since=NOW - 1000 + 180)
    assert snapshot.pages == 1 and not snapshot.exhausted and snapshot.covers(NOW - 1000 + 180)
    snapshot = account.look(since=NOW - 1000 + 100)
    assert snapshot.pages == 2 and snapshot.covers(NOW - 1000 + 100)
    snapshot = account.look(since=0)
    assert snapshot.pages == 3 and snapshot.exhausted and len(snapshot.batches) == 250


def test_first_start_records_what_already_ended_without_firing_it():
    account = Account()
    account.add("old_done", NOW - 500, "completed")
    account.add("running", NOW - 400)
    state = WatchState()
    assert poll(account, state) == []
    assert state.horizon == NOW - 400 and "old_done" in state.known
    account.end("running")
    assert poll(account, state) == ["running"]
    assert poll(account, state) == []


def test_a_batch_created_long_ago_that_ends_late_fires_once():
    account = Account()
    account.add("big", NOW - 10_000)
    state = WatchState()
    poll(account, state)
    for i in range(5):
        account.add(f"small{i}", NOW - 100 + i)
    assert poll(account, state) == []
    for i in range(5):
        account.end(f"small{i}", at=NOW + i)
    assert poll(account, state, now=NOW + 10) == [f"small{i}" for i in range(5)]
    assert state.horizon == NOW - 10_000, "the running old batch holds the horizon down"
    account.end("big", at=NOW + 20)
    assert poll(account, state, now=NOW + 30) == ["big"]
    assert state.horizon == NOW - 96, "nothing runs: the horizon moves to the newest batch"
    assert poll(account, state, now=NOW + 40) == []


def test_restart_from_saved_state_fires_what_ended_while_down_and_nothing_twice():
    account = Account()
    for i in range(5):
        account.add(f"b{i}", NOW - 50 + i)
    state = WatchState()
    poll(account, state)
    account.end("b0")
    account.end("b1")
    assert poll(account, state) == ["b0", "b1"]
    saved = state.to_json()
    # the triggerer is down: two more end
    account.end("b2")
    account.end("b4")
    restarted = WatchState.from_json(saved)
    assert poll(account, restarted) == ["b2", "b4"]
    account.end("b3")
    assert poll(account, restarted) == ["b3"]
    assert poll(account, restarted) == []


def test_unreadable_saved_state_is_a_first_start():
    assert not WatchState.from_json(None).started
    assert not WatchState.from_json({"version": 99, "horizon": 5}).started
    assert not WatchState.from_json("garbage").started


def test_metadata_filter_picks_the_pipeline_but_non_matching_batches_are_not_refired():
    account = Account()
    account.add("mine", NOW - 20, metadata={"pipeline": "nightly_eval", "shard": "1"})
    account.add("theirs", NOW - 10, metadata={"pipeline": "other"})
    state = WatchState()
    poll(account, state, metadata_filter={"pipeline": "nightly_eval"})
    account.end("mine")
    account.end("theirs")
    assert poll(account, state, metadata_filter={"pipeline": "nightly_eval"}) == ["mine"]
    assert poll(account, state, metadata_filter={"pipeline": "nightly_eval"}) == []


def test_matches():
    batch = Batch.model_validate({"id": "b", "status": "completed", "metadata": {"a": "1", "b": "x"}})
    assert matches(batch, None) and matches(batch, {}) and matches(batch, {"a": "1"}) and matches(batch, {"a": 1})
    assert not matches(batch, {"a": "2"}) and not matches(batch, {"c": "1"})
    assert not matches(Batch.model_validate({"id": "b", "status": "completed"}), {"a": "1"})


def test_a_shallow_snapshot_fires_what_it_saw_but_keeps_the_horizon():
    account = Account()
    for i in range(150):
        account.add(f"b{i:03d}", NOW - 1000 + i)
    state = WatchState()
    poll(account, state)
    assert state.horizon == NOW - 1000
    account.end("b149")
    account.end("b000")
    shallow = account.look(since=NOW - 1000 + 120)  # a sibling watcher asked for less: one page
    assert not shallow.covers(state.horizon)
    assert [b.id for b in state.apply(shallow, now=NOW)] == ["b149"]
    assert state.horizon == NOW - 1000
    assert poll(account, state) == ["b000"]


def test_a_baseline_waits_for_a_snapshot_deep_enough():
    account = Account()
    for i in range(150):
        account.add(f"b{i:03d}", NOW - 1000 + i)
    state = WatchState()
    shallow = account.look(since=NOW - 10)
    assert state.apply(shallow, now=NOW) == [] and not state.started
    poll(account, state)
    assert state.started


def test_fired_ids_behind_the_horizon_are_forgotten_after_the_replay_window():
    account = Account()
    account.add("a", NOW - 20)
    account.add("b", NOW - 10)
    state = WatchState()
    poll(account, state)
    account.end("a")
    assert poll(account, state) == ["a"]
    assert "a" in state.known, "kept through the replay window"
    account.add("c", NOW + 5)
    poll(account, state, now=NOW + KEEP_FIRED_SECONDS + 1)
    assert "a" not in state.known and state.horizon == NOW - 10
    assert state.forgotten == ["a"]


def test_one_watcher_over_1000_batches_in_flight_pages_ceil_1000_over_100_per_poll():
    account = Account()
    for i in range(1000):
        account.add(f"b{i:04d}", NOW - 5000 + i)
    for i in range(200):
        account.add(f"done{i:03d}", NOW - 9000 + i, "completed")  # older history, never re-read
    state = WatchState()
    poll(account, state)
    account.requests = 0
    poll(account, state)
    assert account.requests == math.ceil(1000 / 100)
    account.end("b0000")
    assert poll(account, state) == ["b0000"]


def test_state_round_trips_through_json():
    state = WatchState(horizon=5, known={"b": [4.0, 6.0]})
    assert WatchState.from_json(state.to_json()) == state


def test_event_payload_has_the_contract_fields_and_first_few_errors():
    batch = Batch.model_validate(
        {
            "id": "batch_1",
            "status": "failed",
            "failed_at": NOW,
            "errors": {"data": [{"code": "invalid", "message": f"m{i}", "line": i} for i in range(9)]},
            "request_counts": {"total": 3, "completed": 0, "failed": 0},
            "metadata": {"pipeline": "p"},
        }
    )
    event = batch_event(batch)
    assert set(event) == {
        "batch_id",
        "status",
        "output_file_id",
        "error_file_id",
        "request_counts",
        "errors",
        "metadata",
        "completed_at",
    }
    assert event["status"] == "failed" and event["completed_at"] == NOW
    assert event["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
    assert len(event["errors"]) == 5 and event["errors"][0] == {
        "code": "invalid",
        "message": "m0",
        "param": None,
        "line": 0,
    }
    assert event["metadata"] == {"pipeline": "p"}


def test_batches_sharing_the_horizon_second_across_a_page_boundary_are_all_seen():
    account = Account()
    horizon = NOW - 1000
    for i in range(99):
        account.add(f"b{i:03d}", horizon + 1 + i)
    account.add("x1", horizon)
    account.add("x2", horizon)
    account.add("older", horizon - 50, "completed")
    state = WatchState()
    poll(account, state)
    assert state.horizon == horizon and state.horizon_ids == ["x1", "x2"]
    account.requests = 0
    account.end("x1")
    account.end("x2")
    assert poll(account, state) == ["x1", "x2"]
    assert account.requests == 2, "both horizon batches had to be listed: one page more, not the whole history"
