"""The Waiter (the one poll decision), the typed outcome, the transient rule and the token-limit policy.

All pure: fed with batches, errors and a clock value, no server, no Airflow.
"""

from __future__ import annotations

import logging

import pytest

from airflow_provider_openai_batch.api.exceptions import BatchTerminalError, OpenAIAPIError, OpenAITransportError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.api.retry import RetryPolicy
from airflow_provider_openai_batch.api.statuses import EVENT_STATUSES, TERMINAL_STATUSES
from airflow_provider_openai_batch.api.transient import is_transient
from airflow_provider_openai_batch.submitting.resubmit import TokenLimitPolicy
from airflow_provider_openai_batch.waiting.outcome import ResumeState, WaitOutcome
from airflow_provider_openai_batch.waiting.polling import progress
from airflow_provider_openai_batch.waiting.waiter import Waiter


def batch(status: str, **fields) -> Batch:
    return Batch.model_validate({"id": "batch_1", "status": status, **fields})


def waiter(**kwargs) -> Waiter:
    return Waiter("batch_1", **{"poll_interval": 10.0, "end_time": 200.0, **kwargs})


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing", "cancelling"])
def test_in_flight_states_keep_waiting_one_interval(status):
    step = waiter().on_batch(batch(status), now=100.0)
    assert step.outcome is None and step.sleep == 10.0


@pytest.mark.parametrize("status", ["completed", "failed", "expired", "cancelled"])
def test_terminal_states_finish_with_their_name(status):
    outcome = waiter().on_batch(batch(status), now=100.0).outcome
    assert outcome is not None and outcome.status == status and outcome.batch_status == status
    assert "batch_1" in outcome.message


def test_deadline_passed_times_out_but_terminal_wins():
    timed_out = waiter().on_batch(batch("in_progress"), now=200.0).outcome
    assert timed_out.status == "timeout" and timed_out.message.startswith("Timed out waiting for batch batch_1")
    assert waiter().on_batch(batch("completed"), now=300.0).outcome.status == "completed"


def test_sleep_never_passes_the_deadline():
    assert waiter().on_batch(batch("in_progress"), now=195.0).sleep == 5.0
    assert waiter(end_time=None).on_batch(batch("in_progress"), now=1e9).sleep == 10.0
    assert waiter().sleep_before(100.0, shorten=0.2) == 8.0


def test_unknown_status_keeps_waiting_instead_of_crashing():
    assert waiter(end_time=None).on_batch(batch("paused_by_provider"), now=1.0).outcome is None


def test_progress_line_has_counts_percent_and_failures():
    b = batch("in_progress", request_counts={"total": 50000, "completed": 12337, "failed": 3})
    assert progress(b) == "in_progress 12,340/50,000 (24.7%), 3 failed"


def test_progress_is_said_only_on_change():
    w = waiter()
    first = batch("in_progress", request_counts={"total": 10, "completed": 1, "failed": 0})
    assert w.on_batch(first, now=1).lines == ((logging.INFO, "Batch batch_1: in_progress 1/10 (10.0%)"),)
    assert w.on_batch(first, now=2).lines == ()
    assert w.on_batch(batch("in_progress", request_counts={"total": 10, "completed": 2, "failed": 0}), now=3).lines


def test_outage_budget_waits_out_transient_errors_then_gives_up():
    w = waiter(max_outage=60, end_time=None)
    refused = OpenAITransportError("ConnectError: refused", request_sent=False)
    step = w.on_error(refused, now=0)
    assert step.outcome is None and step.sleep == 10.0
    assert step.lines[0][0] == logging.WARNING and "Transient error polling batch batch_1" in step.lines[0][1]
    assert w.on_error(OpenAIAPIError("busy", status_code=503), now=30).outcome is None
    final = w.on_error(refused, now=61).outcome
    assert final.status == "error" and "3 polls in a row" in final.message
    assert final.batch_id == "batch_1" and final.batch_status is None


def test_outage_budget_resets_after_a_success():
    w = waiter(max_outage=60, end_time=None)
    w.on_error(OpenAIAPIError("slow down", status_code=429), now=0)
    w.on_batch(batch("in_progress"), now=50)
    assert w.on_error(OpenAIAPIError("slow down", status_code=429), now=100).outcome is None


def test_a_deadline_is_a_deadline_while_the_api_is_failing():
    """The worker loop used to sleep 0 s and poll on until the outage budget ran out; now it times out."""
    w = waiter(max_outage=1800)
    assert w.on_error(OpenAIAPIError("busy", status_code=503), now=195).sleep == 5.0
    outcome = w.on_error(OpenAIAPIError("busy", status_code=503), now=200).outcome
    assert outcome.status == "timeout"
    assert outcome.message.startswith("Timed out waiting for batch batch_1 while the API was failing: ")


def test_retry_after_longer_than_the_interval_is_honoured_up_to_the_deadline():
    slow = OpenAIAPIError("slow down", status_code=429, retry_after=45.0)
    assert waiter(end_time=None).on_error(slow, now=0).sleep == 45.0
    assert waiter().on_error(slow, now=180).sleep == 20.0


@pytest.mark.parametrize("status_code", [401, 403, 404])
def test_permanent_errors_end_the_wait_at_once(status_code):
    error = OpenAIAPIError("no", status_code=status_code, code="invalid_api_key")
    outcome = waiter().on_error(error, now=0).outcome
    assert outcome.status == "error" and outcome.message == f"Stopped waiting for batch batch_1: {error}"


def test_failed_message_names_codes_lines_and_counts_the_rest():
    errors = [{"code": "invalid_json_line", "line": n, "message": "bad", "param": None} for n in range(1, 9)]
    outcome = waiter().on_batch(batch("failed", errors={"object": "list", "data": errors}), now=0).outcome
    assert "line 1: invalid_json_line: bad" in outcome.message
    assert "line 5: invalid_json_line" in outcome.message
    assert "line 6:" not in outcome.message and "and 3 more" in outcome.message


def test_the_waiter_is_small():
    assert not hasattr(waiter(), "__dict__"), "slots only: thousands live in one triggerer"


# The transient rule, once --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OpenAITransportError("refused", request_sent=False), True),
        (OpenAIAPIError("timeout", status_code=408), True),
        (OpenAIAPIError("conflict", status_code=409), True),
        (OpenAIAPIError("slow", status_code=429), True),
        (OpenAIAPIError("quota", status_code=429, code="insufficient_quota"), False),
        (OpenAIAPIError("boom", status_code=502), True),
        (OpenAIAPIError("bad", status_code=400), False),
        (OpenAIAPIError("key", status_code=401), False),
        (OpenAIAPIError("gone", status_code=404), False),
        (OSError("lookup failed"), True),
        (ValueError("a bug"), False),
    ],
)
def test_one_transient_rule_for_the_error_the_retry_policy_and_the_waiter(error, transient):
    assert is_transient(error) is transient
    if isinstance(error, OpenAIAPIError):
        assert error.is_transient is transient
        assert RetryPolicy().should_retry(error) is transient, "without call-specific narrowing, the same rule"
    assert (Waiter("b").on_error(error, now=0).outcome is None) is transient


def test_status_sets_are_one_vocabulary():
    assert {s.value for s in TERMINAL_STATUSES} | {"timeout", "error"} == EVENT_STATUSES


# The typed outcome ---------------------------------------------------------------------------


def test_outcome_round_trips_through_an_event_and_is_validated_once():
    b = batch(
        "expired",
        output_file_id="file-out",
        error_file_id="file-err",
        input_file_id="file-in",
        request_counts={"total": 4, "completed": 2, "failed": 2},
    )
    resume = ResumeState(key="k", fingerprint="f", end_time=1.5, resubmits=1, waited=2.0, input_file_id="file-in")
    outcome = waiter().on_batch(b, now=0).outcome.with_resume(resume)
    event = outcome.to_event()
    assert WaitOutcome.from_event(event) == outcome
    assert outcome.xcom_values() == {
        "output_file_id": "file-out",
        "error_file_id": "file-err",
        "request_counts": {"total": 4, "completed": 2, "failed": 2},
    }
    with pytest.raises(ValueError):
        WaitOutcome.from_event({**event, "status": "success"})
    before_upgrade = {k: v for k, v in event.items() if k != "resume"} | {"carry": resume.model_dump()}
    assert WaitOutcome.from_event(before_upgrade).resume == resume, "a trigger deferred by the old code still resumes"


def test_an_outcome_without_a_batch_pushes_nothing():
    assert WaitOutcome.of("error", "no", batch_id="b").xcom_values() == {}


def test_token_limit_failure_is_recognised_and_resubmitted_with_a_growing_bounded_delay():
    errors = {"data": [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached"}]}
    state = ResumeState(key="k", fingerprint="f", input_file_id="file-in")
    failed = waiter().on_batch(batch("failed", errors=errors), now=0).outcome.with_resume(state)
    assert failed.is_token_limit_failure
    assert not waiter().on_batch(batch("failed"), now=0).outcome.is_token_limit_failure
    policy = TokenLimitPolicy(first_delay=100, max_delay=250, max_wait=500)
    assert policy.next_delay(failed) == 100
    later = policy.after_waiting(state, 100)
    assert (later.resubmits, later.waited) == (1, 100)
    assert policy.next_delay(failed.with_resume(later)) == 200
    assert policy.next_delay(failed.with_resume(policy.after_waiting(later, 200))) is None, "300 + 250 > 500"
    assert TokenLimitPolicy(enabled=False).next_delay(failed) is None


def test_outcome_fails_on_threshold_and_names_the_fate_of_a_timed_out_batch():
    counts = {"total": 10, "completed": 7, "failed": 3}
    completed = WaitOutcome(status="completed", batch_id="b", message="done", request_counts=counts)
    completed.check()
    completed.check(max_failed_ratio=0.3)
    with pytest.raises(BatchTerminalError, match=r"30\.0% is above max_failed_ratio=20\.0%"):
        completed.check(max_failed_ratio=0.2)
    timed_out = WaitOutcome(status="timeout", batch_id="b", message="Timed out")
    with pytest.raises(BatchTerminalError, match="was cancelled"):
        timed_out.check(cancelled=True)
    with pytest.raises(BatchTerminalError, match="left running"):
        timed_out.check()
