"""The batch statuses, which of them are terminal, and what a finished wait can say (floor 1).

One module holds these sets so the model, the Waiter, the sensor and submit-once cannot
disagree about when a batch is done.
"""

from __future__ import annotations

from enum import Enum


class BatchStatus(str, Enum):
    """Batch lifecycle state; equal to the API string (``BatchStatus.COMPLETED == "completed"``)."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @classmethod
    def _missing_(cls, value: object) -> BatchStatus | None:
        # Some services capitalise ("Validating") or upper-case ("IN_PROGRESS") statuses; anything
        # else still parses, as a pseudo-member that is neither terminal nor known.
        if not isinstance(value, str):
            return None
        lowered = value.lower()
        for member in cls:
            if member.value == lowered:
                return member
        pseudo = str.__new__(cls, value)
        pseudo._name_ = value.upper()
        pseudo._value_ = value
        return pseudo

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[BatchStatus] = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)
"""A batch in one of these states will not change again."""

REATTACHABLE_STATUSES: frozenset[BatchStatus] = frozenset(
    {BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.COMPLETED}
)
"""A batch in one of these states is worth re-attaching to; failed/cancelled/expired ones are resubmitted."""

BATCH_OUTCOMES = frozenset(status.value for status in TERMINAL_STATUSES)
"""Outcomes that are the batch's own end: a retry of a waiting task would see the same state again."""
WAIT_OUTCOMES = frozenset({"timeout", "error"})
"""Outcomes of the wait, not of the batch: our deadline passed, or the API said no for good."""
EVENT_STATUSES = BATCH_OUTCOMES | WAIT_OUTCOMES
"""The ``status`` vocabulary of a trigger event (DESIGN.md): completed, failed, expired, cancelled, timeout, error."""
