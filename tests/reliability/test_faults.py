"""Faults a production deployment meets: restarts, killed workers, rate limits, outages, revoked keys."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from airflow_provider_openai_batch import OpenAIBatchOperator, OpenAIBatchTrigger
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from tests.reliability.conftest import SECRET, TaskInstanceStandIn, write_requests

pytestmark = pytest.mark.reliability


def create_batch(server: FakeOpenAIServer, tmp_path: Path) -> str:
    from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook

    hook = OpenAIBatchHook()
    uploaded = hook.upload_file(write_requests(tmp_path / "in.jsonl"))
    return hook.create_batch(uploaded.id, "/v1/chat/completions").id


async def first_event(trigger: OpenAIBatchTrigger, timeout: float) -> dict:
    async def _next() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(_next(), timeout)


def rebuild(trigger: OpenAIBatchTrigger) -> OpenAIBatchTrigger:
    """What a triggerer does after a restart: import the classpath, call it with the stored kwargs."""
    from airflow.sdk.module_loading import import_string

    classpath, kwargs = trigger.serialize()
    stored = json.loads(json.dumps(kwargs))
    return import_string(classpath)(**stored)


def test_triggerer_restart_resumes_from_the_serialized_trigger_with_the_same_deadline(server, tmp_path):
    server.configure(in_progress_seconds=3)
    batch_id = create_batch(server, tmp_path)
    deadline = time.time() + 600
    trigger = OpenAIBatchTrigger(batch_id, "openai_default", poll_interval=0.2, end_time=deadline, cancel_on_kill=True)

    with pytest.raises(TimeoutError):  # the triggerer process dies while the batch is in flight
        asyncio.run(first_event(trigger, timeout=1.0))
    assert server.batch(batch_id)["status"] in {"validating", "in_progress"}

    resumed = rebuild(trigger)
    assert resumed.end_time == deadline and resumed.batch_id == batch_id
    assert SECRET not in json.dumps(trigger.serialize())
    event = asyncio.run(first_event(resumed, timeout=30))
    assert event["status"] == "completed" and event["batch_id"] == batch_id
    assert event["request_counts"] == {"total": 4, "completed": 4, "failed": 0}


WORKER = textwrap.dedent(
    """
    import sys
    from airflow_provider_openai_batch import OpenAIBatchOperator
    from tests.reliability.conftest import TaskInstanceStandIn
    op = OpenAIBatchOperator(task_id="batch", input_file=sys.argv[1], deferrable=False, poll_interval=0.2)
    op.execute({"ti": TaskInstanceStandIn()})
    """
)


def test_worker_killed_after_create_then_retry_reattaches_to_the_one_batch(server, tmp_path):
    server.configure(in_progress_seconds=3)
    path = write_requests(tmp_path / "in.jsonl", 5)
    repo = Path(__file__).resolve().parents[2]
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(path)], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}
    )
    try:
        deadline = time.time() + 60
        while server.stats()["batches_created"] == 0:
            assert worker.poll() is None, "the worker ended before creating its batch"
            assert time.time() < deadline, "the worker never created its batch"
            time.sleep(0.005)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    (first,) = server.batches()

    ti = TaskInstanceStandIn()  # the retry: same task instance identity, nothing recorded before
    batch_id = OpenAIBatchOperator(task_id="batch", input_file=str(path), deferrable=False, poll_interval=0.2).execute(
        {"ti": ti}
    )
    assert batch_id == first["id"]
    stats = server.stats()
    assert stats["batches_created"] == 1 and stats["uploads"] == 1
    assert ti.xcoms["request_counts"] == {"total": 5, "completed": 5, "failed": 0}


def test_twenty_concurrent_runs_under_rate_limits_and_server_errors_all_succeed(server, tmp_path, caplog):
    server.set_faults(rate_429=0.2, rate_503=0.05, retry_after=1, latency=(0.0, 0.05))
    path = write_requests(tmp_path / "in.jsonl", 3)

    def run(n: int) -> str:
        op = OpenAIBatchOperator(task_id="batch", input_file=str(path), deferrable=False, poll_interval=0.3)
        return op.execute({"ti": TaskInstanceStandIn(run_id=f"manual__{n}")})

    with ThreadPoolExecutor(max_workers=20) as pool:
        batch_ids = list(pool.map(run, range(20)))
    assert len(set(batch_ids)) == 20
    stats = server.stats()
    assert stats["batches_created"] == 20 and stats["uploads"] == 20
    assert all(b["status"] == "completed" for b in server.batches())
    assert stats["faults"].get("rate_429", 0) > 0
    assert SECRET not in caplog.text


def test_the_wait_resumes_after_the_api_is_unreachable_for_two_minutes(server, tmp_path, output):
    server.configure(in_progress_seconds=2)
    batch_id = create_batch(server, tmp_path)
    trigger = OpenAIBatchTrigger(batch_id, "openai_default", poll_interval=5, end_time=time.time() + 900)

    async def scenario() -> dict:
        waiting = asyncio.ensure_future(first_event(trigger, timeout=400))
        await asyncio.sleep(0.5)
        server.go_down(120)
        return await waiting

    event = asyncio.run(scenario())
    assert event["status"] == "completed"
    text = output()
    assert "Transient error polling batch" in text and "ConnectError" in text
    assert SECRET not in text


@pytest.mark.parametrize("case", ["revoked_key", "deleted_batch"])
def test_revoked_key_or_deleted_batch_ends_the_wait_at_once(server, tmp_path, monkeypatch, case):
    batch_id = create_batch(server, tmp_path)
    if case == "revoked_key":
        conn = {"conn_type": "openai_batch", "password": "revoked-key", "host": server.url}
        monkeypatch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
    else:
        batch_id = "batch_deleted0000"
    before = server.stats()["requests_total"]
    trigger = OpenAIBatchTrigger(batch_id, "openai_default", poll_interval=1, end_time=time.time() + 600)
    event = asyncio.run(first_event(trigger, timeout=10))
    assert event["status"] == "error"
    expected = "HTTP 401" if case == "revoked_key" else "HTTP 404"
    assert expected in event["message"]
    # No retry storm: one request (the key is refused on the first list page), or, for an id the
    # list does not show, the shared poller's page and then one GET.
    assert server.stats()["requests_total"] - before == (1 if case == "revoked_key" else 2)
    assert "revoked-key" not in event["message"] and SECRET not in event["message"]


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_killing_the_deferred_task_cancels_the_batch_only_when_asked(server, tmp_path, cancel_on_kill):
    server.configure(in_progress_seconds=30)
    batch_id = create_batch(server, tmp_path)
    trigger = rebuild(OpenAIBatchTrigger(batch_id, "openai_default", poll_interval=1, cancel_on_kill=cancel_on_kill))
    asyncio.run(trigger.on_kill())  # what the Airflow 3.3 triggerer calls on mark-failed / clear / mark-success
    status = server.batch(batch_id)["status"]
    assert status in ({"cancelling", "cancelled"} if cancel_on_kill else {"validating", "in_progress"})


def test_killing_the_worker_path_cancels_the_batch_it_owns(server, tmp_path):
    server.configure(in_progress_seconds=30)
    batch_id = create_batch(server, tmp_path)
    operator = OpenAIBatchOperator(task_id="batch", input_file="unused.jsonl", deferrable=False)
    operator.batch_id = batch_id  # what execute() records as soon as the batch exists
    operator.on_kill()
    assert server.batch(batch_id)["status"] in {"cancelling", "cancelled"}


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_an_airflow_without_trigger_on_kill_is_told_once_that_a_killed_deferred_task_leaves_its_batch(
    server, tmp_path, monkeypatch, cancel_on_kill
):
    """Before Airflow 3.3 the triggerer never calls ``on_kill``: a trigger asked to cancel says so, once."""
    from airflow_provider_openai_batch import compat
    from airflow_provider_openai_batch.triggers import batch as trigger_module

    said: list[tuple[tuple, bool]] = []

    def spy(*args: object) -> bool:
        logged = compat.log_degraded(*args)  # type: ignore[arg-type]
        said.append((args, logged))
        return logged

    monkeypatch.setattr(trigger_module, "SUPPORTS_TRIGGER_ON_KILL", False)
    monkeypatch.setattr(trigger_module, "log_degraded", spy)
    monkeypatch.setattr(compat, "_said", set())
    for batch_id in [create_batch(server, tmp_path) for _ in range(2)]:
        trigger = OpenAIBatchTrigger(batch_id, "openai_default", poll_interval=0.2, cancel_on_kill=cancel_on_kill)
        assert asyncio.run(first_event(trigger, timeout=30))["status"] == "completed"
    if not cancel_on_kill:
        assert said == []
        return
    assert [logged for _, logged in said] == [True, False]  # asked by both triggers, logged by the first only
    feature, needs, instead = said[0][0][:3]
    assert "cancel_on_kill" in feature and needs == "3.3" and "leaves its batch running" in instead
