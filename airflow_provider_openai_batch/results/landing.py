"""Land merged batch results as one JSONL file, atomically, and describe them in a small manifest (floor 1).

Why atomic: the next task reads the file as soon as it exists, so a half-written file under the final name would be
silently wrong data. Writes go to a temporary name beside the target and are renamed only when complete. That holds
for object storage too, where fsspec closes (and so uploads) a file even when its ``with`` block raised, and where a
rename is a server-side copy that creates the final object whole, then deletes the temporary one.

Destinations are local paths (``str`` / ``os.PathLike``) or storage paths, duck-typed on what universal-pathlib's
``UPath`` offers (``parent``, ``name``, ``/``, ``open``, ``mkdir``, ``rename``, ``exists``, ``unlink``), which is what
Airflow's ``ObjectStoragePath`` is, so no Airflow import is needed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import IO, Any

from pydantic import BaseModel, Field

from airflow_provider_openai_batch.api.models import Batch
from airflow_provider_openai_batch.inputs.sources import Source, describe_source, local_path_of
from airflow_provider_openai_batch.results.merge import FetchLines, ResultMerge, ResultStatus

MANIFEST_SCHEMA_VERSION = 1
_WRITE_BUFFER = 1 << 20


def _local_path(destination: Any) -> str | None:
    """The absolute local path, or None for a storage path; a ``scheme://`` string is refused, not made a folder."""
    path = local_path_of(destination)
    if path is None:
        if hasattr(destination, "open"):
            return None
        raise TypeError(f"Cannot write results to {type(destination).__name__}: give a local path or a storage path")
    if "://" in path:
        raise ValueError(f"{path!r} looks like a URI; pass an ObjectStoragePath (or UPath) for object storage")
    return os.path.abspath(path)


def describe_destination(destination: Any) -> str:
    """The absolute local path or the storage URI, as recorded in manifests."""
    local = _local_path(destination)
    return local if local is not None else str(destination)


class _TempBeside:
    """A hidden temporary file in the destination's folder (same filesystem or bucket, so the final rename is cheap)."""

    def __init__(self, destination: Any) -> None:
        self.destination = destination
        self.published = False
        self.local = _local_path(destination)
        if self.local is not None:
            directory, name = os.path.split(self.local)
            os.makedirs(directory, exist_ok=True)
            self.path: Any = os.path.join(directory, _temp_name(name))
        else:
            parent = destination.parent
            if not parent.exists():
                parent.mkdir(parents=True, exist_ok=True)
            self.path = parent / _temp_name(destination.name)

    def open_write(self) -> IO[bytes]:
        if self.local is not None:
            return open(self.path, "xb", buffering=_WRITE_BUFFER)
        return self.path.open("wb")

    def open_read(self) -> IO[bytes]:
        return open(self.path, "rb") if self.local is not None else self.path.open("rb")

    def publish(self) -> None:
        """Rename over any existing file at the destination."""
        if self.local is not None:
            os.replace(self.path, self.local)
        else:
            self.path.rename(self.destination)
        self.published = True

    def remove(self) -> None:
        """Delete the temporary file, if it was not published."""
        if self.published:
            return
        if self.local is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        with contextlib.suppress(Exception):
            if self.path.exists():
                self.path.unlink()


@contextlib.contextmanager
def open_atomic(destination: Any) -> Iterator[IO[bytes]]:
    """Open ``destination`` for binary writing; it appears, whole, only if the ``with`` block succeeds.

    The data goes to a hidden temporary name in the same folder (same filesystem or bucket, so the final rename is
    cheap) and is renamed over any existing file at the end. On any error the temporary file is removed and the
    destination is left as it was.
    """
    temp = _TempBeside(destination)
    try:
        with temp.open_write() as handle:
            yield handle
        temp.publish()
    except BaseException:
        temp.remove()
        raise


def _temp_name(name: str) -> str:
    """Hidden and unique, so readers listing the folder skip it and concurrent writers never share one."""
    return f".{name}.{uuid.uuid4().hex}.part"


class ResultCounts(BaseModel):
    """Landed records per class; ``total`` is the number of lines in the results file."""

    succeeded: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    errored: int = 0
    missing: int = 0
    total: int = 0


class TokenUsage(BaseModel):
    """Tokens summed over the batches' own ``usage`` (0 when a batch does not report it)."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


class ResultTimings(BaseModel):
    """Epoch seconds: creation of the earliest batch, the last terminal timestamp, and when the file landed."""

    created_at: int | None = None
    finished_at: int | None = None
    duration_seconds: int | None = None
    landed_at: int


class ResultsManifest(BaseModel):
    """What was landed, small enough for XCom; the results themselves stay in the file at ``result_path``.

    ``duplicates`` counts custom_ids seen more than once (the better outcome is kept, see :mod:`.results`);
    ``unmatched`` counts records that match no line of ``input_file`` (listed after the input-ordered ones).
    """

    schema_version: int = MANIFEST_SCHEMA_VERSION
    batch_ids: list[str]
    result_path: str
    counts: ResultCounts
    duplicates: int = 0
    unmatched: int = 0
    usage: TokenUsage
    models: list[str] = Field(default_factory=list)
    statuses: dict[str, str]
    timings: ResultTimings
    input_file: str | None = None

    def as_xcom(self) -> dict[str, Any]:
        """A plain JSON dict (ints, strings, lists, dicts) for XCom."""
        return self.model_dump(mode="json")


def _epoch(value: int | str | None) -> int | None:
    """Epoch seconds from the API's int, or from the ISO string some older Azure API versions send."""
    if value is None or isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _sum_usage(batches: Sequence[Batch]) -> TokenUsage:
    total = TokenUsage()
    for batch in batches:
        if batch.usage is None:
            continue
        total.input_tokens += batch.usage.input_tokens
        total.cached_tokens += batch.usage.input_tokens_details.cached_tokens
        total.output_tokens += batch.usage.output_tokens
        total.reasoning_tokens += batch.usage.output_tokens_details.reasoning_tokens
        total.total_tokens += batch.usage.total_tokens
    return total


def _timings(batches: Sequence[Batch], landed_at: int) -> ResultTimings:
    created = [t for t in (_epoch(b.created_at) for b in batches) if t is not None]
    finished = [
        t for b in batches for t in (b.completed_at, b.failed_at, b.expired_at, b.cancelled_at) if t is not None
    ]
    created_at = min(created) if created else None
    finished_at = max(finished) if finished else None
    duration = finished_at - created_at if created_at is not None and finished_at is not None else None
    return ResultTimings(created_at=created_at, finished_at=finished_at, duration_seconds=duration, landed_at=landed_at)


def land_results(
    batches: Batch | Sequence[Batch],
    fetch_lines: FetchLines,
    destination: Any,
    *,
    input_source: Source | None = None,
    spool_dir: str | None = None,
) -> ResultsManifest:
    """Merge the results of ``batches`` into one JSONL file at ``destination`` and return its manifest.

    One line per request (a :class:`~.merge.ResultRecord`), in input order when ``input_source`` is given (see
    :func:`~.merge.iter_results`). ``destination`` is a local path or a storage path (``ObjectStoragePath``,
    ``UPath``); it is replaced atomically and never left half-written.

    Without ``input_source`` the records are written to a temporary file beside ``destination`` as they stream in,
    and that file is renamed into place: one pass, no spool, no second read. (Only when a custom_id's later sighting
    beats a record already written is that file copied once more, without the beaten records.) With
    ``input_source`` they are spooled to a temporary file in ``spool_dir`` (default: the system temp dir; it needs
    about the size of the result files) and written out in input order.
    """
    merge = ResultMerge(batches, fetch_lines, input_source=input_source)
    if input_source is None:
        counts = _land_in_file_order(merge, destination)
    else:
        counts = _land_in_input_order(merge, destination, spool_dir)
    return ResultsManifest(
        batch_ids=merge.batch_ids,
        result_path=describe_destination(destination),
        counts=ResultCounts(**{status.value: n for status, n in counts.items()}, total=sum(counts.values())),
        duplicates=merge.duplicates,
        unmatched=merge.unmatched,
        usage=_sum_usage(merge.batches),
        models=sorted({b.model for b in merge.batches if b.model}),
        statuses={b.id: str(b.status) for b in merge.batches},
        timings=_timings(merge.batches, int(time.time())),
        input_file=_describe_input(input_source),
    )


def _land_in_file_order(merge: ResultMerge, destination: Any) -> dict[ResultStatus, int]:
    first = _TempBeside(destination)
    try:
        with first.open_write() as handle:
            merge.collect(handle)
        if not merge.superseded:
            first.publish()
            return merge.status_counts()
        with first.open_read() as written, open_atomic(destination) as handle:
            handle.writelines(line for _status, line in merge.in_file_order(written))
        return merge.status_counts()
    finally:
        first.remove()


def _land_in_input_order(merge: ResultMerge, destination: Any, spool_dir: str | None) -> dict[ResultStatus, int]:
    counts: Counter[ResultStatus] = Counter()
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        merge.collect(spool)
        spool.flush()
        with open_atomic(destination) as handle:
            write = handle.write
            for status, line in merge.in_input_order(spool):
                write(line)
                counts[status] += 1
    return counts


def _describe_input(source: Source | None) -> str | None:
    if source is None:
        return None
    local = local_path_of(source)
    if local is not None:
        return os.path.abspath(local)
    return describe_source(source)
