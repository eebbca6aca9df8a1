"""The pure poll decision, outage budget, progress lines and failure vocabulary."""

from __future__ import annotations

import pytest

from airflow_provider_openai_batch.api.exceptions import BatchTerminalError, OpenAIAPIError, OpenAITransportError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.waiting.outcome import check_outcome, xcom_values
from airflow_provider_openai_batch.waiting.polling import (
    OutageBudget,
    PollAction,
    ProgressTracker,
    decide,
    event_payload,
    is_token_limit_failure,
    progress,
)


def batch(status: str, **fields) -> Batch:
    return Batch.model_validate({"id": "batch_1", "status": status, **fields})


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing", "cancelling"])
def test_in_flight_states_keep_waiting(status):
    assert decide(batch(status), now=100.0, end_time=200.0).action is PollAction.WAIT


@pytest.mark.parametrize("status", ["completed", "failed", "expired", "cancelled"])
def test_terminal_states_finish_with_their_name(status):
    decision = decide(batch(status), now=100.0, end_time=200.0)
    assert decision.finished and decision.status == status
    assert "batch_1" in decision.message


def test_deadline_passed_times_out_but_terminal_wins():
    assert decide(batch("in_progress"), now=200.0, end_time=200.0).status == "timeout"
    assert decide(batch("completed"), now=300.0, end_time=200.0).status == "completed"


def test_unknown_status_keeps_waiting_instead_of_crashing():
    decision = decide(batch("paused_by_provider"), now=1.0, end_time=None)
    assert decision.action is PollAction.WAIT


def test_progress_line_has_counts_percent_and_failures():
    b = batch("in_progress", request_counts={"total": 50000, "completed": 12337, "failed": 3})
    assert progress(b) == "in_progress 12,340/50,000 (24.7%), 3 failed"


def test_progress_tracker_speaks_only_on_change():
    tracker = ProgressTracker()
    first = batch("in_progress", request_counts={"total": 10, "completed": 1, "failed": 0})
    assert tracker.update(first) == "Batch batch_1: in_progress 1/10 (10.0%)"
    assert tracker.update(first) is None
    assert tracker.update(batch("in_progress", request_counts={"total": 10, "completed": 2, "failed": 0}))


def test_outage_budget_waits_out_transient_errors_then_gives_up():
    budget = OutageBudget(max_outage=60)
    refused = OpenAITransportError("ConnectError: refused", request_sent=False)
    assert budget.on_error(refused, now=0, batch_id="b").action is PollAction.WAIT
    assert budget.on_error(OpenAIAPIError("busy", status_code=503), now=30, batch_id="b").action is PollAction.WAIT
    final = budget.on_error(refused, now=61, batch_id="b")
    assert final.finished and final.status == "error" and "3 polls in a row" in final.message


def test_outage_budget_resets_after_a_success():
    budget = OutageBudget(max_outage=60)
    budget.on_error(OpenAIAPIError("slow down", status_code=429), now=0, batch_id="b")
    budget.on_success()
    decision = budget.on_error(OpenAIAPIError("slow down", status_code=429), now=100, batch_id="b")
    assert decision.action is PollAction.WAIT


@pytest.mark.parametrize("status_code", [401, 403, 404])
def test_permanent_errors_end_the_wait_at_once(status_code):
    error = OpenAIAPIError("no", status_code=status_code, code="invalid_api_key")
    decision = OutageBudget().on_error(error, now=0, batch_id="b")
    assert decision.finished and decision.status == "error"


def test_failed_message_names_codes_lines_and_counts_the_rest():
    errors = [{"code": "invalid_json_line", "line": n, "message": "bad", "param": None} for n in range(1, 9)]
    decision = decide(batch("failed", errors={"object": "list", "data": errors}), now=0, end_time=None)
    assert "line 1: invalid_json_line: bad" in decision.message
    assert "line 5: invalid_json_line" in decision.message
    assert "line 6:" not in decision.message and "and 3 more" in decision.message


def test_payload_carries_ids_counts_and_errors_and_rejects_unknown_status():
    b = batch(
        "expired",
        output_file_id="file-out",
        error_file_id="file-err",
        request_counts={"total": 4, "completed": 2, "failed": 2},
    )
    payload = event_payload(b, "expired", "expired")
    assert xcom_values(payload) == {
        "output_file_id": "file-out",
        "error_file_id": "file-err",
        "request_counts": {"total": 4, "completed": 2, "failed": 2},
    }
    with pytest.raises(ValueError):
        event_payload(b, "success", "")


def test_token_limit_failure_is_recognised():
    errors = {"data": [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached"}]}
    assert is_token_limit_failure(event_payload(batch("failed", errors=errors), "failed", "x"))
    assert not is_token_limit_failure(event_payload(batch("failed"), "failed", "x"))


def test_outcome_fails_on_threshold_and_names_the_fate_of_a_timed_out_batch():
    counts = {"total": 10, "completed": 7, "failed": 3}
    completed = {"status": "completed", "batch_id": "b", "message": "done", "request_counts": counts}
    check_outcome(completed)
    check_outcome(completed, max_failed_ratio=0.3)
    with pytest.raises(BatchTerminalError, match=r"30\.0% is above max_failed_ratio=20\.0%"):
        check_outcome(completed, max_failed_ratio=0.2)
    with pytest.raises(BatchTerminalError, match="was cancelled"):
        check_outcome({"status": "timeout", "batch_id": "b", "message": "Timed out"}, cancelled=True)
    with pytest.raises(BatchTerminalError, match="left running"):
        check_outcome({"status": "timeout", "batch_id": "b", "message": "Timed out"})
