"""Write the retry remainder of a batch: the input lines of the requests worth sending again (floor 1).

After an expired, cancelled or partly failed batch, what the user wants next is a new batch input file holding exactly
the requests that got no lasting answer, so that resubmitting pays only for those. The lines are copied byte for byte
from the original input (never re-serialised), so the retry asks exactly what was asked before, in input order.

Which requests are retried:

- ``expired``, ``cancelled``, ``missing``: never run; always worth retrying.
- ``failed`` only when the HTTP status is retryable (default 408, 409, 429, 500, 502, 503, 504): a 400 would fail
  again, identically.
- ``errored`` by default too: the request got no model answer that could be read (an unknown non-HTTP error code,
  an unreadable result line). The Batch API bills only completed requests, so a retry costs only what it answers, and
  leaving such requests out would drop them silently. Pass ``classes`` without ``"errored"`` to keep them out.
- ``succeeded``: never.

A request of the input that has no line in the results file at all (results landed without the input file) counts as
``missing``. A custom_id landed more than once counts as settled if any of its lines is.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field

from airflow_provider_openai_batch.inputs.sources import Source, describe_source, open_binary
from airflow_provider_openai_batch.results.landing import describe_destination, open_atomic
from airflow_provider_openai_batch.results.merge import ResultStatus, iter_input_requests, loads

DEFAULT_RETRY_STATUSES: frozenset[int | str] = frozenset({408, 409, 429, 500, 502, 503, 504})
DEFAULT_RETRY_CLASSES: tuple[str, ...] = ("expired", "cancelled", "missing", "errored")
_CHOOSABLE = frozenset({"expired", "cancelled", "missing", "errored"})
_SAMPLE_SIZE = 10
_STATUS_CLASS = re.compile(r"([1-5])xx")


class RetryFileSummary(BaseModel):
    """What :func:`write_retry_file` wrote; ``path`` is None (and no file is written) when nothing needs a retry."""

    path: str | None
    requests: int
    custom_ids_sample: list[str] = Field(default_factory=list)
    by_status: dict[str, int] = Field(default_factory=dict)

    def as_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _status_matcher(retry_statuses: Iterable[int | str] | int | str) -> Callable[[int | None], bool]:
    """Exact codes (``429``, ``"429"``) and classes (``"5xx"``) become one predicate."""
    if isinstance(retry_statuses, (int, str)):
        retry_statuses = [retry_statuses]
    exact: set[int] = set()
    hundreds: set[int] = set()
    for entry in retry_statuses:
        if isinstance(entry, int) or (isinstance(entry, str) and entry.isdigit()):
            exact.add(int(entry))
        elif isinstance(entry, str) and (match := _STATUS_CLASS.fullmatch(entry.strip().lower())):
            hundreds.add(int(match.group(1)))
        else:
            raise ValueError(f"retry_statuses entry {entry!r} is neither an HTTP status nor a class like '5xx'")
    return lambda code: code is not None and (code in exact or code // 100 in hundreds)


def _check_classes(classes: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(str(c) for c in ([classes] if isinstance(classes, str) else classes))
    unknown = chosen - _CHOOSABLE
    if unknown:
        raise ValueError(
            f"classes may hold only {sorted(_CHOOSABLE)}; got {sorted(unknown)} "
            "(failed requests are chosen by retry_statuses, succeeded ones are never retried)"
        )
    return chosen


def _retry_reasons(
    results_path: Source, is_retryable: Callable[[int | None], bool], classes: frozenset[str]
) -> dict[str, str | None]:
    """custom_id -> the class it is retried for, or None when it is settled (not to be retried)."""
    canonical = {status.value: status.value for status in ResultStatus}
    reasons: dict[str, str | None] = {}
    with open_binary(results_path) as handle:
        for line_no, raw in enumerate(handle, 1):
            if raw.isspace():
                continue
            try:
                record = loads(raw)
                custom_id, status = record["custom_id"], canonical[record["status"]]
            except (ValueError, TypeError, KeyError):
                raise ValueError(
                    f"{describe_source(results_path)} line {line_no} is not a landed result record"
                ) from None
            if custom_id is None or (custom_id in reasons and reasons[custom_id] is None):
                continue  # matches no request, or already settled by another line
            retry = is_retryable(record.get("status_code")) if status == ResultStatus.FAILED else status in classes
            # The canonical string is shared by every entry instead of one copy per line.
            reasons[custom_id] = status if retry else None
    return reasons


def write_retry_file(
    results_path: Source,
    input_source: Source,
    destination: Any,
    *,
    retry_statuses: Iterable[int | str] | int | str = DEFAULT_RETRY_STATUSES,
    classes: Iterable[str] = DEFAULT_RETRY_CLASSES,
) -> RetryFileSummary:
    """Write a batch input file of the requests to send again, copied byte for byte from ``input_source``.

    ``results_path`` is a file landed by :func:`~.landing.land_results`; ``input_source`` the original batch input;
    ``destination`` a local or storage path, written atomically. ``retry_statuses`` picks the failed requests to
    retry: HTTP codes and/or classes such as ``"5xx"``. ``classes`` picks among expired, cancelled, missing, errored.
    A last input line without a line terminator gets ``\\n`` so the file stays valid JSONL. When nothing needs a
    retry no file is written (the service refuses an empty batch file) and the summary's ``path`` is None.
    """
    chosen_classes = _check_classes(classes)
    reasons = _retry_reasons(results_path, _status_matcher(retry_statuses), chosen_classes)
    absent = "missing" if "missing" in chosen_classes else None
    chosen = (
        (reason, custom_id, raw)
        for _line_no, custom_id, raw in iter_input_requests(input_source)
        if (reason := reasons.get(custom_id, absent)) is not None
    )
    first = next(chosen, None)
    if first is None:
        return RetryFileSummary(path=None, requests=0)
    by_status: Counter[str] = Counter()
    sample: list[str] = []
    with open_atomic(destination) as handle:
        for reason, custom_id, raw in itertools.chain([first], chosen):
            handle.write(raw if raw.endswith(b"\n") else raw + b"\n")
            by_status[reason] += 1
            if len(sample) < _SAMPLE_SIZE:
                sample.append(custom_id)
    return RetryFileSummary(
        path=describe_destination(destination),
        requests=sum(by_status.values()),
        custom_ids_sample=sample,
        by_status=dict(by_status),
    )
