"""Same outcome on every path: the trigger, the operator's worker loop, the sensor's poke and reschedule.

One scripted API per case (progress, a 503 outage that crosses the deadline, 429 with
Retry-After, 401, 404, token_limit_exceeded, expired with partial results), on the real fake
server, driven through the trigger's ``run()``, the operator's non-deferrable wait, and the
sensor in ``poke`` and in ``reschedule`` mode. Every path must end with the same
:class:`WaitOutcome` - status, ids, counts, errors and message. Request ids (one per HTTP
response) are the only text that may differ, so they are blanked before comparing. The
connection allows no retries inside a call, so every error reaches the Waiter itself, and
turns the shared paged poller off, so the trigger asks by id as the other paths do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_openai_batch import OpenAIBatchOperator, OpenAIBatchSensor, OpenAIBatchTrigger
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook, forget_recent_connections
from airflow_provider_openai_batch.operators import batch as operator_module
from airflow_provider_openai_batch.sensors import batch as sensor_module
from airflow_provider_openai_batch.testing import FakeOpenAIServer
from airflow_provider_openai_batch.waiting.outcome import ResumeState, WaitOutcome
from tests.reliability.conftest import SECRET, TaskInstanceStandIn, write_requests

try:  # Task SDK 1.2 (Airflow 3.2)
    from airflow.sdk.exceptions import AirflowRescheduleException
except ImportError:  # Airflow 3.0, 3.1
    from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef]

pytestmark = pytest.mark.reliability

POLL = 0.2
PATHS = ("trigger", "worker", "poke", "reschedule")


@dataclass
class RescheduledTaskInstance(TaskInstanceStandIn):
    """What Airflow keeps across reschedules of one sensor try: the first poke's date."""

    first_poke: datetime | None = None
    seen: list[str] = field(default_factory=list)

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_poke


class Outcomes:
    """Records the outcome each task path finishes with (a spy on the shared ``finish``; it still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_thread: dict[int, list[WaitOutcome]] = {}
        real = operator_module.finish

        def spy(task: Any, context: Any, outcome: WaitOutcome, **kwargs: Any) -> WaitOutcome:
            self.seen.append(outcome)
            return real(task, context, outcome, **kwargs)

        monkeypatch.setattr(operator_module, "finish", spy)
        monkeypatch.setattr(sensor_module, "finish", spy)

    @property
    def seen(self) -> list[WaitOutcome]:
        """What the paths running in this thread finished with (paths may run side by side)."""
        return self.by_thread.setdefault(threading.get_ident(), [])


def use_connection(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer, key: str = SECRET) -> None:
    # Every path asks for the batch by id here (shared_poll off), so requests and messages line up;
    # the shared poller's group behaviour is tested in tests/unit/test_shared_poller.py.
    extra = {"max_retries": 0, "shared_poll": False}
    conn = {"conn_type": "openai_batch", "password": key, "host": server.url, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
    forget_recent_connections()


def run_trigger(batch_id: str, end_time: float | None) -> WaitOutcome:
    async def first() -> dict:
        async for event in OpenAIBatchTrigger(batch_id, "openai_default", POLL, end_time).run():
            return event.payload
        raise AssertionError("no event")

    return WaitOutcome.from_event(asyncio.run(asyncio.wait_for(first(), 60)))


def finished(outcomes: Outcomes, call: Callable[[], Any]) -> WaitOutcome:
    before = len(outcomes.seen)
    with contextlib.suppress(Exception):  # the task fails on most outcomes; the outcome is what we compare
        call()
    assert len(outcomes.seen) == before + 1, "the path ended without finishing through the shared finish"
    return outcomes.seen[-1]


def run_worker(outcomes: Outcomes, batch_id: str, end_time: float | None) -> WaitOutcome:
    operator = OpenAIBatchOperator(
        task_id="batch",
        input_file="unused.jsonl",
        deferrable=False,
        poll_interval=POLL,
        cancel_on_timeout=False,
        retry_on_token_limit=False,
    )
    state = ResumeState(key="k", fingerprint="f", end_time=end_time)
    created = Batch(id=batch_id, status="validating")  # what the operator saw when it created the batch
    return finished(outcomes, lambda: operator._wait({"ti": TaskInstanceStandIn()}, created, state))


def run_sensor(outcomes: Outcomes, batch_id: str, timeout: float, mode: str) -> WaitOutcome:
    ti = RescheduledTaskInstance()

    def poke_until_done() -> Any:
        while True:
            sensor = OpenAIBatchSensor(
                task_id="wait", batch_id=batch_id, deferrable=False, mode=mode, poke_interval=POLL, timeout=timeout
            )
            try:
                return sensor.execute({"ti": ti})
            except AirflowRescheduleException as reschedule:
                ti.first_poke = ti.first_poke or datetime.now(timezone.utc)
                time.sleep(max(0.0, (reschedule.reschedule_date - datetime.now(timezone.utc)).total_seconds()))

    return finished(outcomes, poke_until_done)


def blank_request_ids(outcome: WaitOutcome) -> WaitOutcome:
    """The outcome of the wait alone: request ids blanked, the operator's own resume state left out."""
    message = re.sub(r" \[request id [^\]]+\]", "", outcome.message)
    return outcome.model_copy(update={"message": message, "resume": None})


def each_path(outcomes: Outcomes, batch_id: str, *, timeout: float | None = None, before: Callable = lambda: None):
    """The outcome of every path, one after the other, each with the same deadline length and faults."""
    results = {}
    for path in PATHS:
        before()
        end_time = time.time() + timeout if timeout is not None else None
        if path == "trigger":
            results[path] = run_trigger(batch_id, end_time)
        elif path == "worker":
            results[path] = run_worker(outcomes, batch_id, end_time)
        else:
            results[path] = run_sensor(outcomes, batch_id, timeout or 600.0, path)
    return {path: blank_request_ids(outcome) for path, outcome in results.items()}


def assert_same(results: dict[str, WaitOutcome]) -> WaitOutcome:
    first = results["trigger"]
    for path, outcome in results.items():
        assert outcome == first, f"{path} differs from the trigger:\n{outcome}\n{first}"
    return first


def create_batch(tmp_path: Path, requests: int = 4) -> str:
    hook = OpenAIBatchHook()
    uploaded = hook.upload_file(write_requests(tmp_path / "in.jsonl", requests))
    return hook.create_batch(uploaded.id, "/v1/chat/completions").id


@pytest.fixture
def outcomes(server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Outcomes:
    use_connection(monkeypatch, server)
    return Outcomes(monkeypatch)


def test_progress_to_completion_all_paths_at_once(server, outcomes, tmp_path):
    server.configure(in_progress_seconds=1.5)
    batch_id = create_batch(tmp_path)
    results: dict[str, WaitOutcome] = {}
    runs = {
        "trigger": lambda: run_trigger(batch_id, None),
        "worker": lambda: run_worker(outcomes, batch_id, None),
        "poke": lambda: run_sensor(outcomes, batch_id, 600.0, "poke"),
        "reschedule": lambda: run_sensor(outcomes, batch_id, 600.0, "reschedule"),
    }
    threads = [threading.Thread(target=lambda p=p, r=r: results.__setitem__(p, r())) for p, r in runs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outcome = assert_same({path: blank_request_ids(outcome) for path, outcome in results.items()})
    assert outcome.status == "completed" and outcome.request_counts == {"total": 4, "completed": 4, "failed": 0}
    assert outcome.message.startswith(f"Batch {batch_id} completed: 4 of 4 requests succeeded (output file file-")
    polls = server.stats()["requests"].get("GET /v1/batches/{batch_id}", 0)
    assert polls > len(PATHS), "each path polled while the batch was still running"


def test_a_503_outage_that_crosses_the_deadline_times_out_on_every_path(server, outcomes, tmp_path):
    server.configure(in_progress_seconds=600)
    batch_id = create_batch(tmp_path)
    server.set_faults(rate_503=1.0, methods="GET", path_prefix=f"/v1/batches/{batch_id}")
    outcome = assert_same(each_path(outcomes, batch_id, timeout=1.0))
    assert outcome.status == "timeout"
    assert outcome.message.startswith(f"Timed out waiting for batch {batch_id} while the API was failing: ")
    assert "HTTP 503" in outcome.message


def test_429_with_retry_after_is_waited_out_on_every_path(server, outcomes, tmp_path):
    server.configure(in_progress_seconds=0.2)
    batch_id = create_batch(tmp_path)
    time.sleep(1.0)
    arm = lambda: server.fail_next(2, 429, method="GET", path_prefix=f"/v1/batches/{batch_id}", retry_after=0.5)  # noqa: E731
    outcome = assert_same(each_path(outcomes, batch_id, before=arm))
    assert outcome.status == "completed"
    statuses = [r.status for r in server.requests if r.route == "/v1/batches/{batch_id}"]
    assert statuses.count(429) == 2 * len(PATHS)


@pytest.mark.parametrize("case", ["401", "404"])
def test_a_revoked_key_or_a_missing_batch_ends_every_path_at_once(server, outcomes, tmp_path, monkeypatch, case):
    batch_id = create_batch(tmp_path)
    if case == "401":
        use_connection(monkeypatch, server, key="revoked-key-0000")
    else:
        batch_id = "batch_missing000000"
    outcome = assert_same(each_path(outcomes, batch_id, timeout=600))
    assert outcome.status == "error"
    assert outcome.message.startswith(
        f"Stopped waiting for batch {batch_id}: GET /v1/batches/{batch_id} failed (HTTP {case}"
    )
    assert "revoked-key" not in outcome.message and SECRET not in outcome.message


def test_token_limit_failure_is_the_same_failed_outcome_on_every_path(server, outcomes, tmp_path):
    server.fail_next_batches(1, code="token_limit_exceeded")
    batch_id = create_batch(tmp_path)
    outcome = assert_same(each_path(outcomes, batch_id, timeout=600))
    assert outcome.status == "failed" and outcome.is_token_limit_failure
    assert [e["code"] for e in outcome.errors] == ["token_limit_exceeded"]


def test_expired_with_partial_results_is_the_same_on_every_path(server, outcomes, tmp_path):
    server.configure(in_progress_seconds=600)
    batch_id = create_batch(tmp_path, requests=8)
    time.sleep(0.5)
    server.expire_batch(batch_id, completed_fraction=0.5)
    outcome = assert_same(each_path(outcomes, batch_id, timeout=600))
    assert outcome.status == "expired"
    assert outcome.output_file_id and outcome.error_file_id
    assert outcome.request_counts["total"] == 8 and 0 < outcome.request_counts["completed"] < 8
    assert "expired before finishing its completion window" in outcome.message
