"""Classify one line of a batch output or error file into the JSONL line that lands (floor 1: no Airflow import).

Why it works this way:

- Parsing is most of a landing's time, and almost every line is a success whose body is copied unchanged. So a
  success is read with msgspec into a small typed shape whose ``body`` (and the body's ``usage``) are kept as the raw
  JSON bytes the service sent (``msgspec.Raw``): nothing is built for the body, and the landed line is spliced from
  those bytes instead of re-encoded. msgspec checks the whole line while reading it (it is already a dependency of
  Airflow itself, so it costs no install).
- Anything else (an error line, a 4xx/5xx response, a line of an unexpected shape, a line that is not JSON) takes the
  general path: the whole line is parsed into Python values and classified field by field. A line the fast path
  refuses is always given to the general path, so both paths agree on every class and every message.

Records this module makes up carry an ``error`` whose ``code`` is one of: ``invalid_result_line`` (not JSON, or not a
JSON object), ``missing_custom_id`` (no string ``custom_id``: it matches no request), ``no_outcome`` (neither a
response with a status code nor an error) and ``missing_result`` (the ``missing`` class, made by the merge).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import msgspec


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


_BY_ERROR_CODE = {"batch_expired": ResultStatus.EXPIRED, "batch_cancelled": ResultStatus.CANCELLED}
_NULL = msgspec.Raw(b"null")
_OPEN_BRACE = ord("{")

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_encode_ascii = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class _Response(msgspec.Struct):
    status_code: int
    body: msgspec.Raw = _NULL
    request_id: str | None = None


class _SuccessShape(msgspec.Struct):
    """The parts of a result line a success needs; other keys (``id``, ``error``) are checked but not kept."""

    custom_id: str
    response: _Response


class _BodyUsage(msgspec.Struct):
    usage: msgspec.Raw = _NULL


_decode_success = msgspec.json.Decoder(_SuccessShape).decode
_decode_usage = msgspec.json.Decoder(_BodyUsage).decode
_NOT_THIS_SHAPE = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def loads(raw: bytes | str) -> Any:
    """Parse one JSON line with msgspec (several times faster than ``json``, which would dominate a merge's time).

    The standard library takes over for what msgspec refuses, such as an escaped lone surrogate (half an emoji in a
    model's output), and gives the error message when both refuse.
    """
    try:
        return _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return json.loads(raw)


def record_line(
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
    """One landed JSONL line, with the keys in ``ResultRecord`` order."""
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
        return _encode(record) + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (half an emoji, escaped in a model's output) has no UTF-8 form; ASCII escapes keep it.
        return (_encode_ascii(record) + "\n").encode("ascii")


def make_error(code: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _as_error(value: dict[str, Any]) -> dict[str, Any]:
    """The service's error dict with ``code`` and ``message`` guaranteed present (other keys kept)."""
    return {"code": None, "message": None} | value


class LineClassifier:
    """Classifies the lines of one result file; ``where`` names the file in made-up error messages."""

    def __init__(self, batch_id: str, where: str) -> None:
        self.batch_id = batch_id
        self.where = where
        self._succeeded_head = b',"status":"succeeded","batch_id":' + _encode(batch_id) + b',"status_code":'

    def __call__(self, raw: bytes, line_no: int) -> tuple[str | None, ResultStatus, bytes]:
        """``(custom_id or None, status, landed record line)``; the class comes from the line, not from its file."""
        try:
            line = _decode_success(raw)
        except _NOT_THIS_SHAPE:
            return self._general(raw, line_no)
        response = line.response
        body = response.body
        code = response.status_code
        # Raw bytes are spliced unchecked only when they are valid UTF-8 (msgspec skips over the body's strings).
        if not (200 <= code < 300 and memoryview(body)[0] == _OPEN_BRACE and (raw.isascii() or _is_utf8(raw))):
            return self._general(raw, line_no)
        usage = _decode_usage(body).usage
        if memoryview(usage)[0] != _OPEN_BRACE:
            usage = _NULL
        landed = b"".join(
            (
                b'{"custom_id":',
                _encode(line.custom_id),
                self._succeeded_head,
                b"%d" % code,
                b',"request_id":',
                _encode(response.request_id),
                b',"response":',
                body,
                b',"error":null,"usage":',
                usage,
                b"}\n",
            )
        )
        return line.custom_id, ResultStatus.SUCCEEDED, landed

    def _general(self, raw: bytes, line_no: int) -> tuple[str | None, ResultStatus, bytes]:
        custom_id, status, fields = self._classify(raw, line_no)
        return custom_id, status, record_line(custom_id, status, self.batch_id, **fields)

    def _classify(self, raw: bytes, line_no: int) -> tuple[str | None, ResultStatus, dict[str, Any]]:
        try:
            obj = loads(raw)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            message = f"line {line_no} of {self.where} is not JSON: {exc}"
            return None, ResultStatus.ERRORED, {"error": make_error("invalid_result_line", message)}
        if not isinstance(obj, dict):
            message = f"line {line_no} of {self.where} is not a JSON object"
            return None, ResultStatus.ERRORED, {"error": make_error("invalid_result_line", message)}
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str):
            message = f"line {line_no} of {self.where} has no custom_id, so it matches no request"
            return None, ResultStatus.ERRORED, {"error": make_error("missing_custom_id", message)}

        response, error = obj.get("response"), obj.get("error")
        status_code = response.get("status_code") if isinstance(response, dict) else None
        if isinstance(status_code, int) and not isinstance(status_code, bool):
            return (custom_id, *_with_status_code(response, status_code, error))
        if isinstance(error, dict):
            return custom_id, _BY_ERROR_CODE.get(error.get("code"), ResultStatus.ERRORED), {"error": _as_error(error)}
        message = f"line {line_no} of {self.where} has neither a response with a status_code nor an error"
        return custom_id, ResultStatus.ERRORED, {"error": make_error("no_outcome", message)}


def _with_status_code(response: dict[str, Any], status_code: int, error: Any) -> tuple[ResultStatus, dict[str, Any]]:
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
        return ResultStatus.SUCCEEDED, fields
    body_error = body.get("error")
    if isinstance(body_error, dict):
        fields["error"] = _as_error(body_error)
    elif isinstance(error, dict):
        fields["error"] = _as_error(error)
    else:
        fields["error"] = make_error(None, f"HTTP {status_code} without an error body")
    return ResultStatus.FAILED, fields


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
