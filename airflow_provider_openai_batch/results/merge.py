"""Streaming merge of batch output and error files, joined by ``custom_id`` (floor 1: no Airflow import).

Why it works this way:

- A request's outcome is split over two files that are both out of input order: the output file holds the 2xx
  responses, the error file everything else (non-2xx responses, ``batch_expired`` and other non-HTTP errors), and an
  expired or cancelled batch leaves partial results in both (reference 1.3, 4.3). Only the ``custom_id`` joins them,
  never the line position.
- Files can be gigabytes, so nothing holds one whole. Every line is classified once (:mod:`.classify`) and its record
  written to a *sink* file; memory keeps only the *custom_id index* (``custom_id -> slot``, with each slot's offset,
  length and outcome in compact arrays).
- Without an input file the sink can be the destination itself: records land in file order in one pass (see
  :mod:`.landing`). Only a custom_id whose later sighting is better than the one already written forces a second
  pass, which copies the slots from that first file. With an input file the sink is a temporary spool and the final
  order is produced by reading the slots back in input order.
- The input file, when given, decides the order (one record per input request) and reveals ``missing`` requests: in
  the input but in neither file, e.g. a service that drops the not-run requests of a cancelled batch.
- A ``custom_id`` met twice (two batches, or a retry batch merged with the original) keeps the better outcome:
  ``succeeded`` > ``failed`` > ``errored`` > ``expired`` = ``cancelled``; on a tie the later line wins, because the
  later batch of ``batches`` is taken to be the later attempt. The kept record takes the place of the first sighting.
  Every extra sighting counts as a duplicate.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from airflow_provider_openai_batch.api.exceptions import OpenAIBatchError
from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.inputs.sources import Source, describe_source, open_binary
from airflow_provider_openai_batch.results.classify import (
    LineClassifier,
    ResultStatus,
    loads,
    make_error,
    record_line,
)

__all__ = ["FetchLines", "ResultMerge", "ResultRecord", "ResultStatus", "ResultsInputError", "iter_results", "loads"]

FetchLines = Callable[[str], Iterable[bytes]]
"""Streams the lines of a file id; the hook passes its client's ``iter_file_lines``."""

_STATUSES: tuple[ResultStatus, ...] = tuple(ResultStatus)
_STATUS_CODE = {status: code for code, status in enumerate(_STATUSES)}
_RANK = {
    ResultStatus.SUCCEEDED: 4,
    ResultStatus.FAILED: 3,
    ResultStatus.ERRORED: 2,
    ResultStatus.EXPIRED: 1,
    ResultStatus.CANCELLED: 1,
}
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


def _input_custom_id(raw: bytes) -> Any:
    leading = _LEADING_CUSTOM_ID.match(raw)
    if leading:
        return loads(leading.group(1))
    obj = loads(raw)
    return obj.get("custom_id") if isinstance(obj, dict) else None


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
    """One merge run over the result files of ``batches``.

    Use it once, in one of two ways: iterate :meth:`lines`, or :meth:`collect` the records into a file and then
    read them back in order with :meth:`in_file_order` / :meth:`in_input_order` (what :mod:`.landing` does).
    ``duplicates`` (extra sightings of a custom_id) and ``unmatched`` (records matching no input request, emitted
    after the input-ordered ones; 0 without an input file) are final once the records were read in order.
    ``spool_dir`` is where :meth:`lines` puts its temporary spool (default: the system temp dir); it needs about the
    size of the result files.
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
        self.superseded = 0
        """Slots whose record in the sink was replaced by a later, better one (its old bytes stay unreferenced)."""
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

    def status_counts(self) -> dict[ResultStatus, int]:
        """Records per class among the collected slots (``missing`` ones come only from :meth:`in_input_order`)."""
        statuses = bytes(self._statuses)
        return {status: statuses.count(code) for status, code in _STATUS_CODE.items() if code in statuses}

    def lines(self) -> Iterator[tuple[ResultStatus, bytes]]:
        """Yield ``(status, record line)`` in input order when an input file is given, else in file order."""
        with tempfile.TemporaryFile(dir=self._spool_dir) as spool:
            self.collect(spool)
            spool.flush()
            if self.input_source is None:
                yield from self.in_file_order(spool)
            else:
                yield from self.in_input_order(spool)

    def collect(self, sink: IO[bytes]) -> None:
        """Stream every result file, classify each line and write its record to ``sink``, indexing it by custom_id.

        Written in file order: each batch's output file, then its error file. A line whose custom_id was seen
        before is written only when it wins (see the module docstring), and then counts in :attr:`superseded`.
        """
        if self._started:
            raise RuntimeError("A ResultMerge can be iterated only once")
        self._started = True
        for batch in self.batches:
            for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
                if file_id:
                    classify = LineClassifier(batch.id, f"{kind} file {file_id} (batch {batch.id})")
                    self._collect_file(sink, classify, file_id)

    def _collect_file(self, sink: IO[bytes], classify: LineClassifier, file_id: str) -> None:
        write = sink.write
        index = self._index
        offsets, lengths, statuses = self._offsets, self._lengths, self._statuses
        status_code = _STATUS_CODE
        for line_no, raw in enumerate(self._fetch_lines(file_id), 1):
            if not raw or raw.isspace():  # (no strip(): it would copy every line)
                continue
            custom_id, status, line = classify(raw, line_no)
            if custom_id is not None:
                slot = index.setdefault(custom_id, len(offsets))
                if slot != len(offsets):
                    self._replace(write, slot, status, line)
                    continue
            offsets.append(self._end)
            lengths.append(len(line))
            statuses.append(status_code[status])
            write(line)
            self._end += len(line)

    def _replace(self, write: Callable[[bytes], Any], slot: int, status: ResultStatus, line: bytes) -> None:
        self.duplicates += 1
        if _RANK[status] < _RANK[_STATUSES[self._statuses[slot]]]:
            return
        self.superseded += 1
        self._offsets[slot] = self._end
        self._lengths[slot] = len(line)
        self._statuses[slot] = _STATUS_CODE[status]
        write(line)
        self._end += len(line)

    def in_file_order(self, sink: IO[bytes]) -> Iterator[tuple[ResultStatus, bytes]]:
        """The collected records read back from ``sink``, one per slot, in the order custom_ids were first seen."""
        read = _reader(sink)
        for slot in range(len(self._offsets)):
            yield _STATUSES[self._statuses[slot]], read(self._offsets[slot], self._lengths[slot])

    def in_input_order(self, sink: IO[bytes]) -> Iterator[tuple[ResultStatus, bytes]]:
        """One record per input request in input order (``missing`` made up), then the records matching none."""
        if self.input_source is None:
            raise ValueError("in_input_order needs the merge's input_source")
        read = _reader(sink)
        emitted = bytearray(len(self._offsets))
        batch_id = self.batches[0].id if len(self.batches) == 1 else None
        where = f"batch {batch_id}" if batch_id else f"any of the {len(self.batches)} batches"
        for line_no, custom_id, _raw in iter_input_requests(self.input_source):
            slot = self._index.get(custom_id)
            if slot is None:
                error = make_error("missing_result", f"input line {line_no} is in neither result file of {where}")
                yield ResultStatus.MISSING, record_line(custom_id, ResultStatus.MISSING, batch_id, error=error)
            else:
                emitted[slot] = 1
                yield _STATUSES[self._statuses[slot]], read(self._offsets[slot], self._lengths[slot])
        for slot, done in enumerate(emitted):
            if not done:
                self.unmatched += 1
                yield _STATUSES[self._statuses[slot]], read(self._offsets[slot], self._lengths[slot])


def _reader(sink: IO[bytes]) -> Callable[[int, int], bytes]:
    """``read(offset, length)`` on a file written and flushed: one ``pread`` call for a local file."""
    try:
        fd = sink.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None and hasattr(os, "pread"):
        return lambda offset, length: os.pread(fd, length, offset)

    def read(offset: int, length: int) -> bytes:
        sink.seek(offset)
        return sink.read(length)

    return read


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
