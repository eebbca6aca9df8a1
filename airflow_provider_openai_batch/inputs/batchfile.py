"""Streaming validation of Batch API input files (floor 1: no Airflow import).

A batch input file is checked here, locally and in one streaming pass, before a byte is
uploaded: the service would find the same problems only after the upload and minutes of
``validating``, and then fail the whole batch. Every problem is collected with its 1-based
line number and raised as one :class:`BatchFileValidationError`, so a user fixes the file
once instead of once per problem.

The per-line rules live in :class:`~.scanner.BatchFileScanner` and the limits and required
fields in :mod:`.rules`, which the splitter and the request builder reuse, so the three can
never disagree about what a valid line is. Their names stay importable from here.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import IO, Any

from airflow_provider_openai_batch.inputs.request_shape import count_embedding_inputs
from airflow_provider_openai_batch.inputs.rules import (
    EMBEDDINGS_ENDPOINT,
    MAX_STORED_PROBLEMS,
    REQUIRED_BODY_FIELDS,
    BatchFileSummary,
    BatchLimits,
    ProblemLog,
    check_endpoint,
)
from airflow_provider_openai_batch.inputs.scanner import BLANK_LINE_PROBLEM, BatchFileScanner
from airflow_provider_openai_batch.inputs.sources import Source, describe_source, open_binary

__all__ = [
    "BLANK_LINE_PROBLEM",
    "EMBEDDINGS_ENDPOINT",
    "MAX_STORED_PROBLEMS",
    "REQUIRED_BODY_FIELDS",
    "SPLIT_HINT",
    "BatchFileScanner",
    "BatchFileSummary",
    "BatchLimits",
    "ProblemLog",
    "check_endpoint",
    "count_embedding_inputs",
    "iter_lines",
    "validate_batch_file",
]

SPLIT_HINT = (
    "Split the input into files that fit: split_batch_file(source, destination, endpoint) from "
    "airflow_provider_openai_batch returns one path per shard; in a DAG, OpenAIBatchSplitOperator "
    "followed by OpenAIBatchOperator.partial(...).expand(input_file=<its output>) runs one batch per shard."
)

READ_BLOCK = 8 << 20
"""Bytes read and hashed per step by :func:`iter_lines`' helper thread.

Large on purpose: every block costs the helper a few GIL hand-offs, each of which can wait up
to the interpreter's 5 ms switch interval while the parser runs; at 1 MiB those waits made the
helper the bottleneck, at 8 MiB they vanish. At most three blocks are alive at once (~24 MiB).
"""


HANDOFF_INTERVAL = 0.0005
"""The interpreter's switch interval (seconds) while :func:`iter_lines` runs, instead of the default 5 ms.

The helper thread needs the GIL for a moment after each read and each hash call, while the
parsing thread holds it almost all the time; at 5 ms a wait each time, the helper falls behind
and the parser waits for blocks (measured: the hash then added about half of a bare orjson
loop's time; at 0.5 ms about a fifth). Lowered only while some :func:`iter_lines` is running,
and restored by the last one to finish.
"""

_handoffs_lock = threading.Lock()
_handoffs_users = 0
_saved_interval = 0.0


@contextlib.contextmanager
def _quick_gil_handoffs() -> Iterator[None]:
    global _handoffs_users, _saved_interval
    with _handoffs_lock:
        if _handoffs_users == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved_interval, HANDOFF_INTERVAL))
        _handoffs_users += 1
    try:
        yield
    finally:
        with _handoffs_lock:
            _handoffs_users -= 1
            if _handoffs_users == 0:
                sys.setswitchinterval(_saved_interval)


def iter_lines(handle: IO[bytes], hasher: Any) -> Iterator[bytes]:
    """Yield the lines of a binary stream (split after ``b"\\n"``, as file iteration does) and hash every byte.

    The next block is read and hashed in a helper thread while this one is split and parsed:
    file and network reads and ``hashlib`` release the GIL, so I/O and the fingerprint overlap
    with JSON parsing instead of adding to it (see :data:`HANDOFF_INTERVAL`). Close the generator
    (``contextlib.closing``) before closing ``handle`` so no read is left in flight.
    """

    def next_block() -> bytes:
        block = handle.read(READ_BLOCK)
        if block:
            hasher.update(block)
        return block

    tail: list[bytes] = []
    with _quick_gil_handoffs(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchfile-read") as pool:
        pending = pool.submit(next_block)
        while block := pending.result():
            pending = pool.submit(next_block)
            start = 0
            end = block.find(b"\n")
            if tail and end >= 0:
                tail.append(block[: end + 1])
                yield b"".join(tail)
                tail.clear()
                start = end + 1
                end = block.find(b"\n", start)
            while end >= 0:
                yield block[start : end + 1]
                start = end + 1
                end = block.find(b"\n", start)
            if start < len(block):
                tail.append(block[start:])
    if tail:
        yield b"".join(tail)


def validate_batch_file(
    source: Source, endpoint: str, *, limits: BatchLimits | None = None, skip_blank_lines: bool = False
) -> BatchFileSummary:
    """Check a batch input file in one streaming pass and summarise it; raise one error listing every problem.

    ``source`` is a local path, an open binary stream (read from its current position and left
    open) or a storage path with ``open(mode)`` such as Airflow's ``ObjectStoragePath``. The
    file is never held in memory: lines are checked and hashed as they stream by.

    A blank line before a request is a problem (the service's handling of blank lines is not
    documented). With ``skip_blank_lines=True`` blank lines are allowed and left out of the
    summary: the fingerprint and ``bytes`` are those of the file without them, which is what
    :class:`~.without_blank_lines.WithoutBlankLines` streams to an upload.

    Raises :class:`BatchParameterError` for an endpoint the Batch API does not accept, and
    :class:`BatchFileValidationError` (problems with 1-based line numbers, total count, and a
    hint to split when the file is over ``limits``) when anything is wrong.
    """
    limits = limits or BatchLimits()
    log = ProblemLog()
    scanner = BatchFileScanner(endpoint, log, skip_blank_lines=skip_blank_lines)
    feed = scanner.feed
    with open_binary(source) as handle, closing(iter_lines(handle, scanner.stream_hasher)) as lines:
        for raw in lines:
            feed(raw)
    over = scanner.limit_problems(limits)
    log.raise_if_any(describe_source(source), [*scanner.empty_file_problems(), *over], SPLIT_HINT if over else "")
    return scanner.summary()
