"""The batch lifecycle in real Airflow dag.test() runs against the bundled fake server."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.e2e.conftest import TEST_KEY
from tests.e2e.helpers import write_chat_requests

pytestmark = pytest.mark.e2e


@pytest.mark.compat
def test_deferrable_operator_runs_a_batch_to_completion(run_dag, fake_server, tmp_path):
    path = write_chat_requests(tmp_path / "in.jsonl", 6)
    result = run_dag("e2e_operator_deferrable", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    batch_id = result.xcom("batch")
    assert batch_id.startswith("batch_")
    assert result.xcom("batch", "batch_id") == batch_id
    assert result.xcom("batch", "request_counts") == {"total": 6, "completed": 6, "failed": 0}
    assert result.xcom("batch", "output_file_id").startswith("file-")
    assert result.xcom("batch", "error_file_id") is None
    stats = fake_server.stats()
    assert stats["uploads"] == 1 and stats["batches_created"] == 1


@pytest.mark.compat
def test_submit_then_deferrable_sensor_then_reader(run_dag, fake_server, tmp_path):
    path = write_chat_requests(tmp_path / "in.jsonl", 7)
    result = run_dag("e2e_submit_then_sense", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    output_file_id = result.xcom("wait")
    assert output_file_id == result.xcom("wait", "output_file_id")
    assert result.xcom("wait", "request_counts") == {"total": 7, "completed": 7, "failed": 0}
    assert result.xcom("read_results") == 7


def test_sensor_in_poke_mode(run_dag, fake_server, tmp_path):
    path = write_chat_requests(tmp_path / "in.jsonl", 3)
    result = run_dag("e2e_sensor_poke", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    assert result.xcom("wait").startswith("file-")


def test_non_deferrable_operator_polls_in_the_worker(run_dag, fake_server, tmp_path):
    path = write_chat_requests(tmp_path / "in.jsonl", 4)
    result = run_dag("e2e_operator_sync", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    assert result.xcom("batch", "request_counts")["completed"] == 4


@pytest.mark.fake_server(fail_requests={"req-1": 400, "req-3": 500})
def test_completed_with_failed_requests_succeeds_and_reports_counts(run_dag, fake_server, tmp_path, output):
    path = write_chat_requests(tmp_path / "in.jsonl", 5)
    result = run_dag("e2e_operator_deferrable", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    assert result.xcom("batch", "request_counts") == {"total": 5, "completed": 3, "failed": 2}
    assert result.xcom("batch", "error_file_id").startswith("file-")
    assert "completed with failures: 3 of 5 requests succeeded, 2 failed" in output()


def test_failed_batch_fails_the_task_with_the_service_error(run_dag, fake_server, output):
    result = run_dag("e2e_operator_deferrable", {"input_file": "file-doesnotexist"})
    assert result.state == "failed"
    assert result.ti_states == {"batch": "failed"}
    out = output()
    assert "failed with 1 error(s): invalid_request (file_id): Cannot find file file-doesnotexist" in out


def test_expired_batch_pushes_partial_results_then_fails(run_dag, fake_server, tmp_path, output):
    fake_server.configure(expire_after_fraction=0.5)
    path = write_chat_requests(tmp_path / "in.jsonl", 8)
    result = run_dag("e2e_operator_deferrable", {"input_file": str(path)})
    assert result.state == "failed"
    counts = result.xcom("batch", "request_counts")
    assert counts["total"] == 8 and 0 < counts["completed"] < 8
    assert result.xcom("batch", "output_file_id").startswith("file-")
    assert result.xcom("batch", "error_file_id").startswith("file-")
    assert "expired before finishing its completion window" in output()


def test_cancelled_batch_pushes_partial_results_then_fails(run_dag, fake_server, tmp_path, output):
    fake_server.configure(in_progress_seconds=3)
    path = write_chat_requests(tmp_path / "in.jsonl", 10)
    canceller = threading.Thread(target=_cancel_first_batch_in_progress, args=(fake_server,), daemon=True)
    canceller.start()
    result = run_dag("e2e_operator_deferrable", {"input_file": str(path)})
    canceller.join(timeout=30)
    assert result.state == "failed"
    assert "was cancelled" in output()
    counts = result.xcom("batch", "request_counts")
    assert counts["total"] == 10 and counts["completed"] < 10


def test_timeout_cancels_the_batch_and_says_so(run_dag, fake_server, tmp_path, output):
    fake_server.configure(in_progress_seconds=30)
    path = write_chat_requests(tmp_path / "in.jsonl", 3)
    result = run_dag("e2e_operator_timeout", {"input_file": str(path)})
    assert result.state == "failed"
    out = output()
    assert "Timed out waiting for batch" in out and "The batch was cancelled." in out
    (batch,) = fake_server.batches()
    assert batch["status"] in {"cancelling", "cancelled"}


def test_rate_limits_and_server_errors_are_waited_out_with_one_upload_and_one_batch(run_dag, fake_server, tmp_path):
    fake_server.set_faults(rate_429=0.3, retry_after=1, rate_503=0.1)
    path = write_chat_requests(tmp_path / "in.jsonl", 4)
    result = run_dag("e2e_operator_deferrable", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    stats = fake_server.stats()
    assert stats["uploads"] == 1 and stats["batches_created"] == 1
    assert stats["faults"].get("rate_429", 0) > 0


def test_lost_create_response_is_reconciled_to_exactly_one_batch(run_dag, fake_server, tmp_path, output):
    fake_server.drop_next(1, when="after", method="POST", path_prefix="/v1/batches")
    path = write_chat_requests(tmp_path / "in.jsonl", 4)
    result = run_dag("e2e_operator_deferrable", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    assert fake_server.stats()["batches_created"] == 1
    assert len(fake_server.batches()) == 1
    assert "but the server had made batch" in output()


@pytest.mark.compat
def test_token_limit_failure_waits_and_resubmits(run_dag, fake_server, tmp_path, output):
    fake_server.fail_next_batches(count=1, code="token_limit_exceeded")
    path = write_chat_requests(tmp_path / "in.jsonl", 4)
    result = run_dag("e2e_operator_token_limit", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    out = output()
    assert "enqueued-token limit is full" in out and "resubmitting the same input file" in out
    stats = fake_server.stats()
    assert stats["uploads"] == 1 and stats["batches_created"] == 2
    statuses = sorted(b["status"] for b in fake_server.batches())
    assert statuses == ["completed", "failed"]
    assert result.xcom("batch") == result.xcom("batch", "batch_id")


def test_bad_file_fails_before_anything_is_uploaded(run_dag, fake_server, tmp_path, output):
    path = write_chat_requests(tmp_path / "in.jsonl", 3)
    with path.open("a") as handle:
        handle.write('{"custom_id": "req-0", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n')
        handle.write("not json\n")
    result = run_dag("e2e_operator_deferrable", {"input_file": str(path)})
    assert result.state == "failed"
    out = output()
    assert "line 4" in out and "line 5" in out and "nothing was uploaded" in out
    stats = fake_server.stats()
    assert stats["uploads"] == 0 and stats["batches_created"] == 0


def test_the_api_key_never_appears_in_logs_xcoms_or_trigger_rows(run_dag, fake_server, tmp_path, output):
    fake_server.fail_next(2, status=429, retry_after=1)
    path = write_chat_requests(tmp_path / "in.jsonl", 3)
    result = run_dag("e2e_submit_then_sense", {"input_file": str(path)})
    assert result.state == "success", result.ti_states
    text = output()
    assert "Retrying" in text
    assert TEST_KEY not in text
    assert all(TEST_KEY not in repr(value) for value in result.all_xcom_values())
    assert TEST_KEY not in _trigger_rows() + _log_files_text()


# helpers ---------------------------------------------------------------------------------------


def _cancel_first_batch_in_progress(server) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        running = [b for b in server.batches() if b["status"] == "in_progress"]
        if running and running[0]["request_counts"]["completed"] > 0:
            httpx.post(
                f"{server.url}/batches/{running[0]['id']}/cancel",
                headers={"Authorization": f"Bearer {TEST_KEY}"},
            ).raise_for_status()
            return
        time.sleep(0.05)


def _trigger_rows() -> str:
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        rows = session.execute(text("SELECT classpath, kwargs FROM trigger")).all()
    return repr(rows)


def _log_files_text() -> str:
    import os
    from pathlib import Path

    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return "".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file()) if logs.exists() else ""
