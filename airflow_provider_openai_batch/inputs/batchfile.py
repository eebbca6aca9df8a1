"""Streaming validation of Batch API input files (floor 1: no Airflow import).

A batch input file is checked here, locally and in one streaming pass, before a byte is
uploaded: the service would find the same problems only after the upload and minutes of
``validating``, and then fail the whole batch. Every problem is collected with its 1-based
line number and raised as one :class:`BatchFileValidationError`, so a user fixes the file
once instead of once per problem.

The per-line rules live in :class:`BatchFileScanner`, which the splitter and the request
builder reuse, so the three can never disagree about what a valid line is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import IO, Any

from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError, BatchParameterError, LineProblem
from airflow_provider_openai_batch.api.models import ENDPOINTS
from airflow_provider_openai_batch.inputs.sources import Source, describe_source, open_binary

EMBEDDINGS_ENDPOINT = "/v1/embeddings"

REQUIRED_BODY_FIELDS: dict[str, tuple[str, ...]] = {
    "/v1/chat/completions": ("model", "messages"),
    "/v1/embeddings": ("model", "input"),
    "/v1/responses": ("model", "input"),
    "/v1/completions": ("model", "prompt"),
    "/v1/moderations": ("input",),
    "/v1/images/generations": ("prompt",),
    "/v1/images/edits": ("prompt",),
    "/v1/videos": ("prompt",),
}
"""Body fields each endpoint needs; the service fails a batch whose line lacks one.

Deliberately small: only fields every request to the endpoint must carry (per the API
reference and the service's observed ``Model parameter is required.`` style errors). The
rest of the body is the endpoint's business and is passed through unchecked.
"""

MAX_STORED_PROBLEMS = 1_000
"""Problems kept as objects; all are counted. A broken 200 MB file must not build a huge error."""

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

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BatchLimits:
    """Per-batch limits of the service; the defaults are OpenAI's.

    OpenAI-compatible services differ (Azure OpenAI allows 100,000 requests per file), so the
    limits are a value the caller can replace rather than constants baked into the checks.
    """

    max_requests: int = 50_000
    max_bytes: int = 209_715_200
    max_embedding_inputs: int = 50_000

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BatchParameterError(f"BatchLimits.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class BatchFileSummary:
    """What a valid input file holds; ``fingerprint`` is the sha256 hex of its exact bytes.

    ``estimated_tokens`` is a cheap, deliberately high estimate of the input tokens: the
    characters of every request line (JSON keys and punctuation included) divided by 4, the
    usual English average. It is good enough to keep a file under an enqueued-token budget;
    it is not a tokenizer and does not count output tokens.
    """

    requests: int
    bytes: int
    model: str | None
    endpoint: str
    embedding_inputs: int
    fingerprint: str
    estimated_tokens: int

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (for XCom and logs)."""
        return asdict(self)


class ProblemLog:
    """Collects problems: keeps the first :data:`MAX_STORED_PROBLEMS`, counts all of them."""

    def __init__(self, cap: int = MAX_STORED_PROBLEMS) -> None:
        self.problems: list[LineProblem] = []
        self.total = 0
        self._cap = cap

    def add(self, line: int | None, field: str | None, message: str) -> None:
        self.total += 1
        if len(self.problems) < self._cap:
            self.problems.append(LineProblem(line, field, message))

    def raise_if_any(self, source: str, file_problems: list[LineProblem], hint: str = "") -> None:
        """Raise one error for everything found; whole-file problems go first so they are always shown."""
        total = self.total + len(file_problems)
        if total:
            raise BatchFileValidationError(source, [*file_problems, *self.problems], total, hint)


def check_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` if the Batch API accepts it, else raise naming the ones it does."""
    if endpoint not in ENDPOINTS:
        allowed = ", ".join(ENDPOINTS)
        raise BatchParameterError(f"Unknown batch endpoint {endpoint!r}; the Batch API accepts: {allowed}")
    return endpoint


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON (and the service) does not.
    raise ValueError(f"{name} is not valid JSON")


def count_embedding_inputs(value: object) -> int:
    """How many inputs an embeddings ``input`` holds (the per-batch limit counts these).

    A string is one input; a list of strings or of token arrays is one input per item; a flat
    list of ints is a single pre-tokenised input.
    """
    if isinstance(value, list):
        return 1 if value and isinstance(value[0], int) else len(value)
    return 0 if value is None else 1


def iter_lines(handle: IO[bytes], hasher: Any) -> Iterator[bytes]:
    """Yield the lines of a binary stream (split after ``b"\\n"``, as file iteration does) and hash every byte.

    The next block is read and hashed in a helper thread while this one is split and parsed:
    file and network reads and ``hashlib`` release the GIL, so I/O and the fingerprint overlap
    with JSON parsing instead of adding to it. Close the generator (``contextlib.closing``)
    before closing ``handle`` so no read is left in flight.
    """

    def next_block() -> bytes:
        block = handle.read(READ_BLOCK)
        if block:
            hasher.update(block)
        return block

    tail: list[bytes] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchfile-read") as pool:
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


class BatchFileScanner:
    """The per-line rules of a batch input file, with the running totals a summary needs.

    ``feed`` takes raw lines in file order. It never keeps a line: only the custom_ids seen
    (to name the first line of a duplicate), the model and counters. Whoever supplies the
    lines also feeds ``hasher`` (see :func:`iter_lines`), so the fingerprint covers exactly
    the bytes fed.
    """

    def __init__(self, endpoint: str, log: ProblemLog) -> None:
        self.endpoint = check_endpoint(endpoint)
        self.log = log
        self.lines = 0
        self.requests = 0
        self.bytes = 0
        self.embedding_inputs = 0
        self.estimated_tokens = 0
        self.model: str | None = None
        self._model_line = 0
        self._required = REQUIRED_BODY_FIELDS[endpoint]
        self._count_inputs = endpoint == EMBEDDINGS_ENDPOINT
        self._seen: dict[str, int] = {}
        self.hasher = hashlib.sha256()
        self._decode = json.JSONDecoder(parse_constant=_reject_constant).decode

    def feed(self, raw: bytes) -> tuple[int, int] | None:
        """Check one line; return ``(embedding_inputs, estimated_tokens)``, or None for a blank line.

        Each rule costs one comparison on a valid line; the explanation is built only when a
        rule fails. Nothing is re-encoded: the line is decoded once (the work ``json.loads(bytes)``
        would do anyway) and its character count is the token estimate.
        """
        self.lines += 1
        self.bytes += len(raw)
        if self.lines == 1 and raw.startswith(_BOM):
            self.log.add(1, None, "the file starts with a UTF-8 byte order mark (BOM), which the service rejects")
            raw = raw[len(_BOM) :]
        if raw[:1] != b"{" and not raw.strip():
            return None
        self.requests += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 4]
            self._problem(None, f"not valid UTF-8 (byte {exc.start + 1} of the line starts {bad!r})")
            return 0, 0
        tokens = (len(text) + 3) // 4
        self.estimated_tokens += tokens
        obj = self._parse(text)
        if obj is None:
            return 0, tokens
        custom_id = obj.get("custom_id")
        if type(custom_id) is not str or not custom_id or self._seen.setdefault(custom_id, self.lines) != self.lines:
            self._custom_id_problem(custom_id)
        if obj.get("method") != "POST" or obj.get("url") != self.endpoint:
            self._route_problems(obj.get("method"), obj.get("url"))
        body = obj.get("body")
        if type(body) is not dict:
            self._problem("body", "missing required field 'body'" if body is None else _not_object("body", body))
            return 0, tokens
        return self._check_body(body), tokens

    def skip(self) -> None:
        """Count a request line a writer could not produce (its problem is logged) so later numbers stay right."""
        self.lines += 1
        self.requests += 1

    def _problem(self, field: str | None, message: str) -> None:
        self.log.add(self.lines, field, message)

    def _parse(self, text: str) -> dict[str, Any] | None:
        try:
            obj = self._decode(text)
        except json.JSONDecodeError as exc:
            where = "at the end of the line" if exc.pos >= len(text.rstrip()) else f"column {exc.pos + 1}"
            self._problem(None, f"not valid JSON: {exc.msg} ({where})")
            return None
        except (ValueError, RecursionError) as exc:
            self._problem(None, f"not valid JSON: {exc}")
            return None
        if type(obj) is not dict:
            self._problem(None, f"a line must be a JSON object, got {_json_type(obj)}")
            return None
        return obj

    def _custom_id_problem(self, custom_id: object) -> None:
        if custom_id is None:
            self._problem("custom_id", "missing required field 'custom_id'")
        elif type(custom_id) is not str:
            self._problem("custom_id", f"custom_id must be a string, got {_json_type(custom_id)}")
        elif not custom_id:
            self._problem("custom_id", "custom_id must not be empty")
        else:
            self._problem("custom_id", f"custom_id {custom_id!r} already used on line {self._seen[custom_id]}")

    def _route_problems(self, method: object, url: object) -> None:
        for field, value, expected in (("method", method, "POST"), ("url", url, self.endpoint)):
            if value is None:
                self._problem(field, f"missing required field {field!r}")
            elif value != expected:
                self._problem(field, f"{field} must be {expected!r}, got {value!r}")

    def _check_body(self, body: dict[str, Any]) -> int:
        """Check the body; return its embedding inputs (0 unless the endpoint is embeddings)."""
        stream = body.get("stream")
        if stream is not None and stream is not False:
            self._problem("body.stream", "body.stream must be false or absent: the Batch API does not stream")
        for name in self._required:
            if body.get(name) is None:
                self._problem(f"body.{name}", f"missing body.{name}, which {self.endpoint} requires")
        model = body.get("model")
        if model is not None and model != self.model:
            self._check_model(model)
        if self._count_inputs:
            inputs = count_embedding_inputs(body.get("input"))
            self.embedding_inputs += inputs
            return inputs
        return 0

    def _check_model(self, model: object) -> None:
        if type(model) is not str:
            self._problem("body.model", f"body.model must be a string, got {_json_type(model)}")
        elif self.model is None:
            self.model, self._model_line = model, self.lines
        elif model != self.model:
            self._problem(
                "body.model",
                f"model {model!r} differs from model {self.model!r} on line {self._model_line}; "
                "a batch may use only one model",
            )

    @property
    def fingerprint(self) -> str:
        return self.hasher.hexdigest()

    def empty_file_problems(self) -> list[LineProblem]:
        """The whole-file problem of an input without a single request line."""
        if self.requests:
            return []
        return [LineProblem(None, None, "the file has no request lines (empty or whitespace only)")]

    def limit_problems(self, limits: BatchLimits) -> list[LineProblem]:
        """Whole-file problems of an input over the per-batch limits (the ones splitting fixes)."""
        found = []
        if self.requests > limits.max_requests:
            found.append(_over("requests", self.requests, limits.max_requests))
        if self.bytes > limits.max_bytes:
            found.append(_over("bytes", self.bytes, limits.max_bytes))
        if self._count_inputs and self.embedding_inputs > limits.max_embedding_inputs:
            found.append(_over("embedding inputs", self.embedding_inputs, limits.max_embedding_inputs))
        return found

    def summary(self) -> BatchFileSummary:
        return BatchFileSummary(
            requests=self.requests,
            bytes=self.bytes,
            model=self.model,
            endpoint=self.endpoint,
            embedding_inputs=self.embedding_inputs,
            fingerprint=self.fingerprint,
            estimated_tokens=self.estimated_tokens,
        )


def _over(what: str, value: int, limit: int) -> LineProblem:
    return LineProblem(None, None, f"the file has {value:,} {what}; a batch allows at most {limit:,}")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _not_object(field: str, value: object) -> str:
    return f"{field} must be a JSON object, got {_json_type(value)}"


def validate_batch_file(source: Source, endpoint: str, *, limits: BatchLimits | None = None) -> BatchFileSummary:
    """Check a batch input file in one streaming pass and summarise it; raise one error listing every problem.

    ``source`` is a local path, an open binary stream (read from its current position and left
    open) or a storage path with ``open(mode)`` such as Airflow's ``ObjectStoragePath``. The
    file is never held in memory: lines are checked and hashed as they stream by.

    Raises :class:`BatchParameterError` for an endpoint the Batch API does not accept, and
    :class:`BatchFileValidationError` (problems with 1-based line numbers, total count, and a
    hint to split when the file is over ``limits``) when anything is wrong.
    """
    limits = limits or BatchLimits()
    log = ProblemLog()
    scanner = BatchFileScanner(endpoint, log)
    feed = scanner.feed
    with open_binary(source) as handle, closing(iter_lines(handle, scanner.hasher)) as lines:
        for raw in lines:
            feed(raw)
    over = scanner.limit_problems(limits)
    log.raise_if_any(describe_source(source), [*scanner.empty_file_problems(), *over], SPLIT_HINT if over else "")
    return scanner.summary()
