"""When to resubmit a batch the enqueued-token limit refused (floor 1: no Airflow import).

A batch fails with ``token_limit_exceeded`` when the organisation's queue of enqueued tokens
is full; the same input succeeds once earlier batches drain it. The policy sits beside
submit-once because a resubmission is a submit: the same idempotency key, the same uploaded
file (nothing is uploaded again), a new batch only when the old one ended ``failed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_openai_batch import defaults
from airflow_provider_openai_batch.waiting.outcome import ResumeState, WaitOutcome


@dataclass(frozen=True)
class TokenLimitPolicy:
    """Resubmit after a growing, bounded delay: ``first_delay`` doubling up to ``max_delay``, ``max_wait`` in all."""

    enabled: bool = True
    first_delay: float = defaults.TOKEN_LIMIT_RETRY_DELAY
    max_delay: float = defaults.TOKEN_LIMIT_MAX_DELAY
    max_wait: float = defaults.TOKEN_LIMIT_MAX_WAIT

    def next_delay(self, outcome: WaitOutcome) -> float | None:
        """Seconds to wait before resubmitting, or None: not a token-limit failure, turned off, or budget spent."""
        state = outcome.resume
        if not self.enabled or state is None or not outcome.is_token_limit_failure:
            return None
        delay = min(self.first_delay * 2**state.resubmits, self.max_delay)
        if state.waited + delay > self.max_wait:
            return None
        return delay

    def after_waiting(self, state: ResumeState, delay: float) -> ResumeState:
        """The state a resubmission goes on with: one more resubmit, ``delay`` more seconds waited."""
        return state.model_copy(update={"resubmits": state.resubmits + 1, "waited": state.waited + delay})

    def describe(self, outcome: WaitOutcome, state: ResumeState, delay: float) -> str:
        return (
            f"Batch {outcome.batch_id} failed because the organisation's enqueued-token limit is full "
            f"({outcome.message}). Waiting {delay:.0f}s, then resubmitting the same input file "
            f"{state.input_file_id} (resubmission {state.resubmits}, {state.waited:.0f}s of "
            f"{self.max_wait:.0f}s waiting budget used)."
        )
