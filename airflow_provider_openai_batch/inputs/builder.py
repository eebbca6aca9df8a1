"""Build batch input files from Python objects (floor 1: no Airflow import).

A ``@task`` that turns a question set into a nightly eval, or a table into an embeddings
backfill, should not hand-write JSONL: :func:`write_batch_requests` streams requests to a
local path or a storage path, applies the same per-line rules as the validator (so what it
writes passes :func:`~airflow_provider_openai_batch.inputs.batchfile.validate_batch_file`, or, when
it is over the per-batch limits, :func:`~airflow_provider_openai_batch.inputs.splitter.split_batch_file`)
and returns the same summary, fingerprint included.

Writes are all-or-nothing: a local file is written under a temporary name and renamed into
place; an object-storage object only appears when its upload completes. A reader never sees
half a batch file, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_provider_openai_batch.api.exceptions import BatchParameterError
from airflow_provider_openai_batch.inputs.batchfile import (
    SPLIT_HINT,
    BatchFileScanner,
    BatchFileSummary,
    BatchLimits,
    ProblemLog,
)
from airflow_provider_openai_batch.inputs.sources import describe_source, local_path_of

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"
COMPLETIONS = "/v1/completions"


class BatchRequest(BaseModel):
    """One request of a batch, before it becomes a line of the input file.

    ``url`` may be left out: the writer fills in the batch's endpoint. When it is given (the
    helpers below set it) the writer checks it against the endpoint, which catches a chat
    request written into an embeddings batch.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    custom_id: str = Field(min_length=1)
    body: dict[str, Any]
    method: Literal["POST"] = "POST"
    url: str | None = None


# Writing -----------------------------------------------------------------------------------


def local_path(target: Any) -> str | None:
    """The absolute local path behind ``target``, or None when it is an object-storage path.

    A string with a scheme (``s3://...``) is refused rather than taken for a local folder
    named ``s3:``: object storage must come as a path object (Airflow's ``ObjectStoragePath``).
    """
    if isinstance(target, str):
        if "://" in target:
            raise TypeError(f"{target!r} is a URI string; pass an ObjectStoragePath for object storage")
        return os.path.abspath(target)
    local = local_path_of(target)
    if local is not None:
        return os.path.abspath(local)
    if not hasattr(target, "open"):
        raise TypeError(f"Cannot write a batch file to {type(target).__name__}: give a path or a storage path")
    return None


class StagedFile:
    """A file written where readers cannot see it yet, then published whole or discarded.

    Local paths (and ``file://`` storage paths) are written to a hidden temporary name in the
    same folder and renamed over the target, which is atomic on one filesystem. Object stores
    are written directly: an object is published only when its upload completes, and a
    "rename" there would be a second full copy.
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self._path = local_path(target)
        if self._path is not None:
            folder, name = os.path.split(self._path)
            self._temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")

    def open(self) -> IO[bytes]:
        if self._path is None:
            return self.target.open("wb")
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        return open(self._temporary, "xb")

    def publish(self) -> None:
        if self._path is not None:
            os.replace(self._temporary, self._path)

    def discard(self) -> None:
        """Remove whatever was written; fsspec files commit on close even when the writer failed."""
        if self._path is not None:
            with suppress(FileNotFoundError):
                os.unlink(self._temporary)
        else:
            with suppress(OSError):
                self.target.unlink()


@contextmanager
def open_for_write(target: Any) -> Iterator[IO[bytes]]:
    """Open ``target`` for binary writing so that the file appears whole or not at all (see :class:`StagedFile`)."""
    staged = StagedFile(target)
    try:
        with staged.open() as handle:
            yield handle
        staged.publish()
    except BaseException:
        staged.discard()
        raise


def encode_line(line: Mapping[str, Any]) -> bytes:
    """Compact, stable JSONL encoding: insertion order, no spaces, UTF-8, and no NaN (invalid JSON)."""
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def write_batch_requests(
    destination: Any,
    requests: Iterable[BatchRequest | Mapping[str, Any]],
    endpoint: str,
    *,
    limits: BatchLimits | None = None,
) -> BatchFileSummary:
    """Stream ``requests`` into a batch input file at ``destination`` and return its summary.

    ``destination`` is a local file path or a storage path with ``open("wb")`` (Airflow's
    ``ObjectStoragePath``). Each request is a :class:`BatchRequest` or a mapping with the same
    keys; ``method`` and ``url`` are filled in. Requests are written as they come, so a generator
    of a million requests never sits in memory.

    Every line is checked with the validator's rules as it is written (duplicate custom_ids,
    url vs endpoint, required body fields, one model, no streaming). The per-batch size limits
    are checked only when ``limits`` is given (``limits=BatchLimits()`` for OpenAI's): a file
    too big for one batch is what an embeddings backfill writes on purpose, as the input of
    :func:`~airflow_provider_openai_batch.inputs.splitter.split_batch_file`. On any problem nothing
    is left at ``destination`` and one
    :class:`~airflow_provider_openai_batch.api.exceptions.BatchFileValidationError` lists them all.
    The summary's fingerprint is the sha256 of the bytes written.
    """
    log = ProblemLog()
    scanner = BatchFileScanner(endpoint, log)
    with open_for_write(destination) as out:
        for request in requests:
            raw = _request_line(request, endpoint, scanner)
            if raw is None:
                scanner.skip()
                continue
            scanner.hasher.update(raw)
            scanner.feed(raw)
            if not log.total:
                out.write(raw)
        over = scanner.limit_problems(limits) if limits else []
        problems = [*scanner.empty_file_problems(), *over]
        log.raise_if_any(describe_source(destination), problems, SPLIT_HINT if over else "")
    return scanner.summary()


def _request_line(request: BatchRequest | Mapping[str, Any], endpoint: str, scanner: BatchFileScanner) -> bytes | None:
    """Encode one request as a line, or log why it cannot be one and return None."""
    line_number = scanner.lines + 1
    try:
        model = request if isinstance(request, BatchRequest) else BatchRequest.model_validate(request)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or None
            scanner.log.add(line_number, field, f"invalid request: {error['msg']}")
        return None
    line = {"custom_id": model.custom_id, "method": model.method, "url": model.url or endpoint, "body": model.body}
    try:
        return encode_line(line)
    except (TypeError, ValueError) as exc:
        scanner.log.add(line_number, "body", f"cannot be written as JSON: {exc}")
        return None


# Request helpers ---------------------------------------------------------------------------


def _body(fields: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The request body: the helper's fields plus any endpoint parameters, which may not replace them."""
    clash = sorted(fields.keys() & params.keys())
    if clash:
        raise BatchParameterError(f"{', '.join(clash)} is set by the helper's own arguments; do not pass it in params")
    return {**fields, **params}


def chat_request(
    custom_id: str, model: str, prompt: str | list[dict[str, Any]], *, system: str | None = None, **params: Any
) -> BatchRequest:
    """A chat-completions request: an optional system message, then ``prompt`` as the user message.

    ``params`` are further body fields (``temperature``, ``max_completion_tokens``, ``response_format``...).
    """
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": prompt})
    return BatchRequest(custom_id=custom_id, url=CHAT, body=_body({"model": model, "messages": messages}, params))


def embedding_request(custom_id: str, model: str, input: str | list[Any], **params: Any) -> BatchRequest:
    """An embeddings request; a list ``input`` embeds several texts and counts as that many inputs."""
    return BatchRequest(custom_id=custom_id, url=EMBEDDINGS, body=_body({"model": model, "input": input}, params))


def responses_request(custom_id: str, model: str, input: str | list[Any], **params: Any) -> BatchRequest:
    """A Responses API request; pass ``instructions=...`` for a system prompt."""
    return BatchRequest(custom_id=custom_id, url=RESPONSES, body=_body({"model": model, "input": input}, params))


def _completion_request(custom_id: str, model: str, prompt: str, **params: Any) -> BatchRequest:
    return BatchRequest(custom_id=custom_id, url=COMPLETIONS, body=_body({"model": model, "prompt": prompt}, params))


_TEMPLATE_ENDPOINTS = (CHAT, RESPONSES, EMBEDDINGS, COMPLETIONS)


def _template_request(
    endpoint: str, custom_id: str, model: str, text: str, system: str | None, params: dict[str, Any]
) -> BatchRequest:
    if endpoint == CHAT:
        return chat_request(custom_id, model, text, system=system, **params)
    if endpoint == RESPONSES:
        instructions = {"instructions": system} if system is not None else {}
        return responses_request(custom_id, model, text, **instructions, **params)
    if endpoint == EMBEDDINGS:
        return embedding_request(custom_id, model, text, **params)
    return _completion_request(custom_id, model, text, **params)


def requests_from_template(
    records: Iterable[Mapping[str, Any]],
    *,
    model: str,
    template: str,
    endpoint: str = CHAT,
    id_field: str = "id",
    system: str | None = None,
    **params: Any,
) -> Iterator[BatchRequest]:
    """One request per record, its prompt ``template.format(**record)`` and its custom_id ``record[id_field]``.

    Made for ``@task`` code that builds a nightly eval from a question set: feed the result to
    :func:`write_batch_requests`. Records are read lazily. ``system`` becomes the system message
    (chat) or ``instructions`` (responses); ``params`` go into every body.
    """
    if endpoint not in _TEMPLATE_ENDPOINTS:
        raise BatchParameterError(f"requests_from_template supports {', '.join(_TEMPLATE_ENDPOINTS)}; got {endpoint!r}")
    if system is not None and endpoint in (EMBEDDINGS, COMPLETIONS):
        raise BatchParameterError(f"{endpoint} has no system prompt; leave system=None")
    return (
        _template_request(
            endpoint, _record_id(record, id_field, number), model, _render(template, record, number), system, params
        )
        for number, record in enumerate(records, 1)
    )


def _record_id(record: Mapping[str, Any], id_field: str, number: int) -> str:
    value = record.get(id_field)
    if value is None or value == "":
        fields = ", ".join(map(str, record)) or "none"
        raise BatchParameterError(f"record {number} has no {id_field!r} for the custom_id (its fields: {fields})")
    return str(value)


def _render(template: str, record: Mapping[str, Any], number: int) -> str:
    try:
        return template.format(**record)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise BatchParameterError(f"record {number}: template {template!r} cannot be filled: {exc!r}") from exc
