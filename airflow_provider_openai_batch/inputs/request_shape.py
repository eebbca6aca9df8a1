"""The shape of a valid batch request line, read fast (floor 1: no Airflow import).

Validating a 200 MB input is mostly JSON parsing, and the standard library builds every
string of every prompt only to look at five fields. msgspec (a dependency of Airflow itself)
reads a line into the small typed shape below instead: it checks the whole line's JSON but
skips over the prompts without building them (``msgspec.Raw``), which makes a check about as
fast as a bare ``orjson.loads`` of the line.

:func:`quick_facts` only answers "is this line certainly fine, and what does it hold?". It
never explains a problem: a line it does not vouch for goes through the scanner's general,
field-by-field checks (:mod:`.batchfile`), which name every problem. So the messages, and the
verdict on every line, stay those of the general checks.
"""

from __future__ import annotations

import msgspec

_NULL = msgspec.Raw(b"null")
_FALSE = msgspec.Raw(b"false")


class _Body(msgspec.Struct):
    """The body fields some endpoint requires or forbids; every other field is checked as JSON and skipped."""

    model: str | None = None
    stream: msgspec.Raw = _NULL
    messages: msgspec.Raw = _NULL
    input: msgspec.Raw = _NULL
    prompt: msgspec.Raw = _NULL


class _Request(msgspec.Struct):
    custom_id: str
    method: str
    url: str
    body: _Body


_decode_request = msgspec.json.Decoder(_Request).decode
_NOT_THIS_SHAPE = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def quick_facts(
    raw: bytes, endpoint: str, required: tuple[str, ...], count_inputs: bool
) -> tuple[str, str | None, int, int] | None:
    """``(custom_id, model, embedding_inputs, characters)`` of a line that passes every per-line rule, else None.

    The rules that depend on other lines (duplicate custom_ids, one model per file) are the
    caller's. ``characters`` is the length of the decoded line (the token estimate's base).
    """
    try:
        request = _decode_request(raw)
    except _NOT_THIS_SHAPE:
        return None
    body = request.body
    if not request.custom_id or request.method != "POST" or request.url != endpoint:
        return None
    if body.stream != _NULL and body.stream != _FALSE:
        return None
    for name in required:
        value = getattr(body, name)
        if value is None or value == _NULL:
            return None
    if raw.isascii():
        characters = len(raw)
    else:
        try:  # msgspec does not check the UTF-8 of what it skips
            characters = len(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    inputs = count_embedding_inputs(msgspec.json.decode(body.input)) if count_inputs else 0
    return request.custom_id, body.model, inputs, characters


def count_embedding_inputs(value: object) -> int:
    """How many inputs an embeddings ``input`` holds (the per-batch limit counts these).

    A string is one input; a list of strings or of token arrays is one input per item; a flat
    list of ints is a single pre-tokenised input.
    """
    if isinstance(value, list):
        return 1 if value and isinstance(value[0], int) else len(value)
    return 0 if value is None else 1
