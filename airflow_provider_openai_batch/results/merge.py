"""Streaming merge of batch output and error files, joined by ``custom_id`` (floor 1: no Airflow import).

Why it works this way:

- A request's outcome is split over two files that are both out of input order: the output file holds the 2xx
  responses, the error file everything else (non-2xx responses, ``batch_expired`` and other non-HTTP errors), and an
  expired or cancelled batch leaves partial results in both (reference 1.3, 4.3). Only the ``custom_id`` joins them,
  never the line position.
- Files can be gigabytes, so nothing holds one whole. Every line is classified once and its record is spooled to a
  temporary file; memory keeps only the *custom_id index* (``custom_id -> slot``, with each slot's offset, length and
  outcome in compact arrays). The final order is produced by seeking in the spool.
- The input file, when given, decides the order (one record per input request) and reveals ``missing`` requests: in
  the input but in neither file, e.g. a service that drops the not-run requests of a cancelled batch.
- A ``custom_id`` met twice (two batches, or a retry batch merged with the original) keeps the better outcome:
  ``succeeded`` > ``failed`` > ``errored`` > ``expired`` = ``cancelled``; on a tie the later line wins, because the
  later batch of ``batches`` is taken to be the later attempt. Every extra sighting counts as a duplicate.

Records this module makes up carry an ``error`` whose ``code`` is one of: ``invalid_result_line`` (not JSON, or not a
JSON object), ``missing_custom_id`` (no string ``custom_id``: it matches no request), ``no_outcome`` (neither a
response with a status code nor an error) and ``missing_result`` (the ``missing`` class).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum
from typing import IO, Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticSerializationError, from_json, to_json

from airflow_provider_openai_batch.api.exceptions import OpenAIBatchError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.inputs.sources import Source, describe_source, open_binary

FetchLines = Callable[[str], Iterable[bytes]]
"""Streams the lines of a file id; the hook passes its client's ``iter_file_lines``."""


class ResultStatus(str, Enum):
    """What became of one request; equal to its string (``ResultStatus.SUCCEEDED == "succeeded"``)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    ERRORED = "errored"
    MISSING = "missing"

    def __str__(self) -> str:
        return self.value


_STATUSES: tuple[ResultStatus, ...] = tuple(ResultStatus)
_STATUS_CODE = {status: code for code, status in enumerate(_STATUSES)}
_RANK = {
    ResultStatus.SUCCEEDED: 4,
    ResultStatus.FAILED: 3,
    ResultStatus.ERRORED: 2,
    ResultStatus.EXPIRED: 1,
    ResultStatus.CANCELLED: 1,
}
_BY_ERROR_CODE = {"batch_expired": ResultStatus.EXPIRED, "batch_cancelled": ResultStatus.CANCELLED}

_encode_ascii = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
# Most writers put custom_id first; then it is read without parsing the (possibly large) request body.
_LEADING_CUSTOM_ID = re.compile(rb'\s*\{\s*"custom_id"\s*:\s*("(?:[^"\\]|\\.)*")\s*,')


class ResultRecord(BaseModel):
    """The outcome of one request, as landed (one JSONL line each).

    ``response`` is the endpoint's response body (for ``failed`` it holds the error body); ``error`` is a dict with at
    least ``code`` and ``message`` for every class but ``succeeded``; ``usage`` is the body's ``usage`` when present;
    ``request_id`` is the service's id of the request, the thing to quote in a support ticket.
    """

    model_config = ConfigDict(frozen=True)

    custom_id: str | None
    status: ResultStatus
    batch_id: str | None = None
    status_code: int | None = None
    request_id: str | None = None
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


class ResultsInputError(OpenAIBatchError, ValueError):
    """The input file given to order the results is not a batch input file (a line without a ``custom_id``)."""


def iter_input_requests(source: Source) -> Iterator[tuple[int, str, bytes]]:
    """Stream ``(line_number, custom_id, raw_line)`` of a batch input file; blank lines are skipped.

    The raw line is returned untouched (terminator included) so a retry file can copy it byte for byte. Only the
    custom_id is read: the rest of the line was validated before it was uploaded.
    """
    with open_binary(source) as handle:
        for line_no, raw in enumerate(handle, 1):
            if raw.isspace():
                continue
            try:
                custom_id = _input_custom_id(raw)
            except ValueError as exc:
                raise ResultsInputError(
                    f"{describe_source(source)} line {line_no} is not JSON ({exc}); is it the batch's input file?"
                ) from None
            if not isinstance(custom_id, str):
                raise ResultsInputError(
                    f"{describe_source(source)} line {line_no} has no string custom_id; is it the batch's input file?"
                )
            yield line_no, custom_id, raw


def loads(raw: bytes) -> Any:
    """Parse one JSON line with pydantic-core (several times faster than ``json``, which dominates a merge's time).

    The standard library takes over for what pydantic-core refuses, such as an escaped lone surrogate (half an emoji
    in a model's output), and gives the error message when both refuse.
    """
    try:
        return from_json(raw)
    except ValueError:
        return json.loads(raw)


def _input_custom_id(raw: bytes) -> Any:
    leading = _LEADING_CUSTOM_ID.match(raw)
    if leading:
        return loads(leading.group(1))
    obj = loads(raw)
    return obj.get("custom_id") if isinstance(obj, dict) else None


def _record_line(
    custom_id: str | None,
    status: ResultStatus,
    batch_id: str | None,
    *,
    status_code: int | None = None,
    request_id: str | None = None,
    response: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> bytes:
    """One landed JSONL line, with the keys in :class:`ResultRecord` order."""
    record = {
        "custom_id": custom_id,
        "status": status.value,
        "batch_id": batch_id,
        "status_code": status_code,
        "request_id": request_id,
        "response": response,
        "error": error,
        "usage": usage,
    }
    try:
        return to_json(record) + b"\n"
    except PydanticSerializationError:
        # A lone surrogate (half an emoji, escaped in a model's output) has no UTF-8 form; ASCII escapes keep it.
        return (_encode_ascii(record) + "\n").encode("ascii")


def _error(code: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _as_error(value: dict[str, Any]) -> dict[str, Any]:
    """The service's error dict with ``code`` and ``message`` guaranteed present (other keys kept)."""
    return {"code": None, "message": None} | value


def _classify_line(raw: bytes, batch_id: str, where: str, line_no: int) -> tuple[str | None, ResultStatus, bytes]:
    """Classify one output/error-file line: ``(custom_id or None, status, landed record line)``.

    The class comes from the line's content, not from the file it came from, so a 2xx line in the error file
    still counts as succeeded. ``where`` names the file in made-up error messages (built only when needed).
    """
    custom_id, status, fields = _classify(raw, where, line_no)
    return custom_id, status, _record_line(custom_id, status, batch_id, **fields)


def _classify(raw: bytes, where: str, line_no: int) -> tuple[str | None, ResultStatus, dict[str, Any]]:
    try:
        obj = loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        message = f"line {line_no} of {where} is not JSON: {exc}"
        return None, ResultStatus.ERRORED, {"error": _error("invalid_result_line", message)}
    if not isinstance(obj, dict):
        message = f"line {line_no} of {where} is not a JSON object"
        return None, ResultStatus.ERRORED, {"error": _error("invalid_result_line", message)}
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str):
        message = f"line {line_no} of {where} has no custom_id, so it matches no request"
        return None, ResultStatus.ERRORED, {"error": _error("missing_custom_id", message)}

    response, error = obj.get("response"), obj.get("error")
    status_code = response.get("status_code") if isinstance(response, dict) else None
    if isinstance(status_code, int) and not isinstance(status_code, bool):
        body = response.get("body")
        request_id = response.get("request_id")
        fields: dict[str, Any] = {
            "status_code": status_code,
            "request_id": request_id if isinstance(request_id, str) else None,
            "response": body if isinstance(body, dict) else None,
        }
        body = fields["response"] or {}
        if 200 <= status_code < 300:
            usage = body.get("usage")
            fields["usage"] = usage if isinstance(usage, dict) else None
            return custom_id, ResultStatus.SUCCEEDED, fields
        body_error = body.get("error")
        if isinstance(body_error, dict):
            fields["error"] = _as_error(body_error)
        elif isinstance(error, dict):
            fields["error"] = _as_error(error)
        else:
            fields["error"] = _error(None, f"HTTP {status_code} without an error body")
        return custom_id, ResultStatus.FAILED, fields
    if isinstance(error, dict):
        return custom_id, _BY_ERROR_CODE.get(error.get("code"), ResultStatus.ERRORED), {"error": _as_error(error)}
    message = f"line {line_no} of {where} has neither a response with a status_code nor an error"
    return custom_id, ResultStatus.ERRORED, {"error": _error("no_outcome", message)}


def _unique_batches(batches: Batch | Sequence[Batch]) -> list[Batch]:
    """The batches to merge, each id once (a batch listed twice would make every line a duplicate)."""
    if isinstance(batches, Batch):
        batches = [batches]
    seen: set[str] = set()
    unique = []
    for batch in batches:
        if batch.id not in seen:
            seen.add(batch.id)
            unique.append(batch)
    if not unique:
        raise ValueError("No batches to merge results from")
    return unique


class ResultMerge:
    """One merge run over the result files of ``batches``: iterate :meth:`lines` once.

    ``duplicates`` (extra sightings of a custom_id) and ``unmatched`` (records matching no input request, emitted
    after the input-ordered ones; 0 without an input file) are final once :meth:`lines` is exhausted.
    ``spool_dir`` is where the temporary spool goes (default: the system temp dir); it needs about the size of the
    result files.
    """

    def __init__(
        self,
        batches: Batch | Sequence[Batch],
        fetch_lines: FetchLines,
        *,
        input_source: Source | None = None,
        spool_dir: str | None = None,
    ) -> None:
        self.batches = _unique_batches(batches)
        self.input_source = input_source
        self.duplicates = 0
        self.unmatched = 0
        self._fetch_lines = fetch_lines
        self._spool_dir = spool_dir
        self._index: dict[str, int] = {}
        self._offsets = array("q")
        self._lengths = array("q")
        self._statuses = bytearray()
        self._end = 0
        self._started = False

    @property
    def batch_ids(self) -> list[str]:
        return [batch.id for batch in self.batches]

    @property
    def index_nbytes(self) -> int:
        """Approximate memory held by the custom_id index: what grows with the number of requests."""
        entries = sum(sys.getsizeof(key) + sys.getsizeof(slot) for key, slot in self._index.items())
        arrays = sys.getsizeof(self._offsets) + sys.getsizeof(self._lengths) + sys.getsizeof(self._statuses)
        return sys.getsizeof(self._index) + entries + arrays

    def lines(self) -> Iterator[tuple[ResultStatus, bytes]]:
        """Yield ``(status, record line)`` in input order when an input file is given, else in file order."""
        if self._started:
            raise RuntimeError("A ResultMerge can be iterated only once")
        self._started = True
        with tempfile.TemporaryFile(dir=self._spool_dir) as spool:
            for batch in self.batches:
                for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
                    if file_id:
                        self._spool_file(spool, batch.id, kind, file_id)
            spool.flush()
            if self.input_source is None:
                for slot in range(len(self._offsets)):
                    yield self._read(spool, slot)
            else:
                yield from self._in_input_order(spool)

    def _spool_file(self, spool: IO[bytes], batch_id: str, kind: str, file_id: str) -> None:
        where = f"{kind} file {file_id} (batch {batch_id})"
        for line_no, raw in enumerate(self._fetch_lines(file_id), 1):
            if raw and not raw.isspace():  # (no strip(): it would copy every line)
                self._add(spool, *_classify_line(raw, batch_id, where, line_no))

    def _add(self, spool: IO[bytes], custom_id: str | None, status: ResultStatus, line: bytes) -> None:
        slot = self._index.get(custom_id) if custom_id is not None else None
        if slot is None:
            if custom_id is not None:
                self._index[custom_id] = len(self._offsets)
            self._offsets.append(self._end)
            self._lengths.append(len(line))
            self._statuses.append(_STATUS_CODE[status])
        else:
            self.duplicates += 1
            if _RANK[status] < _RANK[_STATUSES[self._statuses[slot]]]:
                return
            # The better outcome takes over the slot (and so the first sighting's place in file order);
            # the old bytes stay in the spool unreferenced.
            self._offsets[slot] = self._end
            self._lengths[slot] = len(line)
            self._statuses[slot] = _STATUS_CODE[status]
        spool.write(line)
        self._end += len(line)

    def _read(self, spool: IO[bytes], slot: int) -> tuple[ResultStatus, bytes]:
        spool.seek(self._offsets[slot])
        return _STATUSES[self._statuses[slot]], spool.read(self._lengths[slot])

    def _in_input_order(self, spool: IO[bytes]) -> Iterator[tuple[ResultStatus, bytes]]:
        emitted = bytearray(len(self._offsets))
        batch_id = self.batches[0].id if len(self.batches) == 1 else None
        where = f"batch {batch_id}" if batch_id else f"any of the {len(self.batches)} batches"
        for line_no, custom_id, _raw in iter_input_requests(self.input_source):
            slot = self._index.get(custom_id)
            if slot is None:
                error = _error("missing_result", f"input line {line_no} is in neither result file of {where}")
                yield ResultStatus.MISSING, _record_line(custom_id, ResultStatus.MISSING, batch_id, error=error)
            else:
                emitted[slot] = 1
                yield self._read(spool, slot)
        for slot, done in enumerate(emitted):
            if not done:
                self.unmatched += 1
                yield self._read(spool, slot)


def iter_results(
    batches: Batch | Sequence[Batch],
    fetch_lines: FetchLines,
    *,
    input_source: Source | None = None,
    spool_dir: str | None = None,
) -> Iterator[ResultRecord]:
    """Stream the merged, classified results of one or more batches as :class:`ResultRecord` objects.

    With ``input_source`` (the batch input file: path, stream or storage path) the records follow the input order,
    one per input request, ``missing`` included, then any record matching no input request. Without it they follow
    file order: each batch's output file, then its error file. Nothing reads the result files before the first
    record is asked for; bad arguments fail at once.
    """
    merge = ResultMerge(batches, fetch_lines, input_source=input_source, spool_dir=spool_dir)
    return (ResultRecord.model_validate(loads(line)) for _status, line in merge.lines())
