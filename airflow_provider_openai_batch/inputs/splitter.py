"""Split a batch input that is over the per-batch limits into shards that each fit (floor 1: no Airflow import).

An embeddings backfill of 300,000 texts, or an eval set that grew past 50,000 prompts, cannot
be one batch. :func:`split_batch_file` cuts it into files that each pass
:func:`~airflow_provider_openai_batch.inputs.batchfile.validate_batch_file` and returns their
locations, ready for ``OpenAIBatchOperator.partial(...).expand(input_file=...)``.

It reads the source twice and holds no line in memory: the first pass checks every line with
the validator's rules and plans where each shard starts (so nothing is written for a bad
input); the second copies bytes, unparsed, into the shards and checks that the source did
not change in between.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from typing import Any

from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError, BatchParameterError, LineProblem
from airflow_provider_openai_batch.inputs.batchfile import (
    BatchFileScanner,
    BatchFileSummary,
    BatchLimits,
    ProblemLog,
    iter_lines,
)
from airflow_provider_openai_batch.inputs.builder import StagedFile, local_path
from airflow_provider_openai_batch.inputs.scanner import is_blank
from airflow_provider_openai_batch.inputs.sources import (
    Source,
    describe_source,
    is_file_like,
    local_path_of,
    open_binary,
    source_filename,
)

SHARD_DIGITS = 5


@dataclass(frozen=True)
class Shard:
    """One planned shard: input lines ``first_line..last_line`` (1-based, inclusive) and what they hold."""

    index: int
    first_line: int
    last_line: int
    requests: int
    bytes: int
    embedding_inputs: int
    estimated_tokens: int


@dataclass(frozen=True)
class ShardPlan:
    """Where each shard starts and ends, and the summary of the whole (valid) input."""

    shards: tuple[Shard, ...]
    lines: int
    summary: BatchFileSummary


class _ShardPlanner:
    """Cuts the stream of lines greedily: a shard takes requests until the next one would break a limit.

    Whitespace-only lines (only trailing ones pass validation, unless blank lines are skipped)
    stay in the shard of the request before them and count towards its bytes, so the shards
    concatenate back to the input byte for byte; skipped blank lines count nothing.
    """

    def __init__(self, limits: BatchLimits, max_tokens: int | None, log: ProblemLog) -> None:
        self._limits = limits
        self._max_tokens = max_tokens
        self._log = log
        self.shards: list[Shard] = []
        self._first = 1
        self._requests = self._bytes = self._inputs = self._tokens = 0

    def add(self, line: int, size: int, facts: tuple[int, int] | None) -> None:
        if facts is None:
            crossed = self._bytes <= self._limits.max_bytes < self._bytes + size
            self._bytes += size
            if crossed:
                self._log.add(line, None, "whitespace-only lines push a shard past max_bytes; remove them")
            return
        inputs, tokens = facts
        if self._too_big_alone(line, size, inputs, tokens):
            return
        if self._requests and not self._fits(size, inputs, tokens):
            self._close(line - 1)
            self._first = line
        self._requests += 1
        self._bytes += size
        self._inputs += inputs
        self._tokens += tokens

    def finish(self, last_line: int) -> tuple[Shard, ...]:
        if self._requests:
            self._close(last_line)
        return tuple(self.shards)

    def _fits(self, size: int, inputs: int, tokens: int) -> bool:
        limits = self._limits
        return (
            self._requests < limits.max_requests
            and self._bytes + size <= limits.max_bytes
            and self._inputs + inputs <= limits.max_embedding_inputs
            and (self._max_tokens is None or self._tokens + tokens <= self._max_tokens)
        )

    def _too_big_alone(self, line: int, size: int, inputs: int, tokens: int) -> bool:
        limits, found = self._limits, []
        if size > limits.max_bytes:
            found.append(f"the line is {size:,} bytes; a shard holds at most {limits.max_bytes:,}")
        if inputs > limits.max_embedding_inputs:
            found.append(f"the line has {inputs:,} embedding inputs; a shard holds {limits.max_embedding_inputs:,}")
        if self._max_tokens is not None and tokens > self._max_tokens:
            found.append(f"the line is about {tokens:,} tokens; a shard holds at most {self._max_tokens:,}")
        for message in found:
            self._log.add(line, None, f"{message}, so no shard can take this request")
        return bool(found)

    def _close(self, last_line: int) -> None:
        self.shards.append(
            Shard(len(self.shards), self._first, last_line, self._requests, self._bytes, self._inputs, self._tokens)
        )
        self._requests = self._bytes = self._inputs = self._tokens = 0


def plan_shards(
    source: Source,
    endpoint: str,
    *,
    limits: BatchLimits | None = None,
    max_tokens_per_shard: int | None = None,
    skip_blank_lines: bool = False,
) -> ShardPlan:
    """Check every line of ``source`` and plan shards that each satisfy ``limits`` and the token budget.

    The lower-level half of :func:`split_batch_file`, useful on its own to see how an input
    would be cut. Raises one :class:`BatchFileValidationError` for every bad line, including a
    line that alone exceeds a shard limit; the file-level limits are not problems here, since
    splitting is what fixes them.
    """
    limits = limits or BatchLimits()
    _check_token_budget(max_tokens_per_shard)
    log = ProblemLog()
    scanner = BatchFileScanner(endpoint, log, skip_blank_lines=skip_blank_lines)
    planner = _ShardPlanner(limits, max_tokens_per_shard, log)
    with open_binary(source) as handle, closing(iter_lines(handle, scanner.stream_hasher)) as lines:
        for raw in lines:
            facts = scanner.feed(raw)
            skipped = facts is None and skip_blank_lines and is_blank(raw)
            planner.add(scanner.lines, 0 if skipped else len(raw), facts)
    log.raise_if_any(describe_source(source), scanner.empty_file_problems())
    return ShardPlan(planner.finish(scanner.lines), scanner.lines, scanner.summary())


def split_batch_file(
    source: Source,
    destination: Any,
    endpoint: str,
    *,
    max_requests: int = 50_000,
    max_bytes: int = 209_715_200,
    max_embedding_inputs: int = 50_000,
    max_tokens_per_shard: int | None = None,
    prefix: str | None = None,
    skip_blank_lines: bool = False,
) -> list[str]:
    """Split a batch input into shards ``{prefix}-00000.jsonl``, ... that each fit one batch; return their locations.

    The whole input is checked first with the validator's rules (every bad line is reported and
    nothing is written); then it is streamed into shards that each respect ``max_requests``,
    ``max_bytes``, ``max_embedding_inputs`` and, if given, ``max_tokens_per_shard`` (an
    enqueued-token budget, using the validator's estimate). Lines are never split or reordered:
    the shards concatenate back to the input exactly, and the same input always gives the
    same shards. ``prefix`` defaults to the source's file name without ``.jsonl``.

    ``destination`` is a local folder (created if missing) or a storage path such as Airflow's
    ``ObjectStoragePath`` (anything with ``/``, ``open``, ``mkdir``, ``exists`` and ``unlink``).
    In a distributed deployment the shards must go to shared storage (an ``ObjectStoragePath``):
    a local folder only serves tasks that run on the same machine.

    Shards count as done only once the whole source was copied and found unchanged. Local
    shards are written under temporary names and then renamed into place; object-store shards
    are uploaded directly (an object appears only when its upload completes, and a rename there
    would be a second full copy) and deleted again if the copy fails. A re-run overwrites the
    shards and deletes leftovers of an earlier, longer run: ``{prefix}-NNNNN.jsonl`` from the
    first unused number up to the first number that does not exist.

    Returns local absolute paths for a local folder, ``str(path)`` URIs for a storage path, so
    the list can go through XCom into ``OpenAIBatchOperator.partial(...).expand(input_file=...)``.
    ``source`` may be a path, a storage path or a seekable binary stream (it is read twice).

    A blank line before a request is a problem, as for :func:`validate_batch_file`; with
    ``skip_blank_lines=True`` the shards are written without blank lines instead (and so no
    longer concatenate to the input exactly).
    """
    limits = BatchLimits(max_requests, max_bytes, max_embedding_inputs)
    prefix = _shard_prefix(prefix, source)
    folder = local_path(destination)
    _refuse_overwriting_source(source, folder, prefix)
    start = _rewind_point(source)
    plan = plan_shards(
        source, endpoint, limits=limits, max_tokens_per_shard=max_tokens_per_shard, skip_blank_lines=skip_blank_lines
    )
    _make_folder(destination, folder)
    targets = [_child(destination, _shard_name(prefix, shard.index)) for shard in plan.shards]
    if start is not None:
        source.seek(start)
    _copy_shards(source, plan, [StagedFile(target) for target in targets], skip_blank_lines)
    _remove_leftovers(destination, prefix, len(targets))
    return [target if isinstance(target, str) else str(target) for target in targets]


def _copy_shards(source: Source, plan: ShardPlan, staged: list[StagedFile], skip_blank_lines: bool) -> None:
    """Copy the planned line ranges into the staged files; publish them only if the source was unchanged."""
    hasher = hashlib.sha256()
    opened: list[StagedFile] = []
    try:
        stream_hasher = _Unhashed() if skip_blank_lines else hasher
        with open_binary(source) as handle, closing(iter_lines(handle, stream_hasher)) as lines:
            for shard, stage in zip(plan.shards, staged, strict=True):
                opened.append(stage)
                with stage.open() as out:
                    shard_lines = islice(lines, shard.last_line - shard.first_line + 1)
                    if skip_blank_lines:  # the plan's fingerprint covers the lines kept
                        shard_lines = _hashed_requests(shard_lines, hasher)
                    out.writelines(shard_lines)
            extra_lines = sum(1 for _ in lines)
        if extra_lines or hasher.hexdigest() != plan.summary.fingerprint:
            problem = LineProblem(None, None, "the file changed while it was being split; no shard was published")
            raise BatchFileValidationError(describe_source(source), [problem])
        for stage in staged:
            stage.publish()
    except BaseException:
        for stage in opened:
            stage.discard()
        raise


class _Unhashed:
    def update(self, data: bytes) -> None:
        pass


def _hashed_requests(lines: Iterator[bytes], hasher: Any) -> Iterator[bytes]:
    """The lines that are not blank, each hashed on the way."""
    for line in lines:
        if not is_blank(line):
            hasher.update(line)
            yield line


def _check_token_budget(max_tokens: int | None) -> None:
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise BatchParameterError(f"max_tokens_per_shard must be a positive int or None, got {max_tokens!r}")


def _shard_prefix(prefix: str | None, source: Source) -> str:
    """The shard file prefix: the caller's, or the source's file name made safe for any store."""
    if prefix is None:
        name = source_filename(source, default="batch")
        stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else os.path.splitext(name)[0]
        return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "batch"
    if not prefix or "/" in prefix or "\\" in prefix:
        raise BatchParameterError(f"prefix must be a non-empty file name prefix without slashes, got {prefix!r}")
    return prefix


def _shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:0{SHARD_DIGITS}d}.jsonl"


def _rewind_point(source: Source) -> int | None:
    """Where a stream source starts, so the second pass can seek back; None for paths."""
    if not is_file_like(source):
        return None
    if not (hasattr(source, "seekable") and source.seekable()):
        raise TypeError("split_batch_file reads its source twice: give a path, a storage path or a seekable stream")
    return source.tell()


def _make_folder(destination: Any, folder: str | None) -> None:
    if folder is None:
        destination.mkdir(parents=True, exist_ok=True)
    else:
        os.makedirs(folder, exist_ok=True)


def _child(destination: Any, name: str) -> Any:
    """A file in ``destination``: an absolute path string for a local folder, else a storage path."""
    local = local_path_of(destination)
    if local is not None:
        return os.path.join(os.path.abspath(local), name)
    return destination / name


def _refuse_overwriting_source(source: Source, folder: str | None, prefix: str) -> None:
    """Splitting a shard into its own folder with its own prefix would overwrite (or delete) the input."""
    source_path = local_path_of(source)
    if folder is None or source_path is None:
        return
    source_folder, name = os.path.split(os.path.realpath(source_path))
    pattern = rf"{re.escape(prefix)}-\d{{{SHARD_DIGITS}}}\.jsonl"
    if source_folder == os.path.realpath(folder) and re.fullmatch(pattern, name):
        raise BatchParameterError(f"{name} would be overwritten by its own shards; use another destination or prefix")


def _remove_leftovers(destination: Any, prefix: str, count: int) -> None:
    """Delete ``{prefix}-{count}``, ``{prefix}-{count + 1}``, ... left by an earlier run that made more shards."""
    for index in itertools.count(count):
        leftover = _child(destination, _shard_name(prefix, index))
        if isinstance(leftover, str):
            if not os.path.exists(leftover):
                return
            os.unlink(leftover)
        else:
            if not leftover.exists():
                return
            leftover.unlink()
