"""The per-line rules of a batch input file: :class:`BatchFileScanner` (floor 1: no Airflow import).

The validator, the splitter and the request builder all feed their lines to it, so the three can
never disagree about what a valid line is. A line the fast reader vouches for
(:func:`~.request_shape.quick_facts`) costs one parse; any other line gets the general checks
below, which name every problem with its 1-based line number.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from airflow_provider_openai_batch.api.exceptions import LineProblem
from airflow_provider_openai_batch.inputs.request_shape import count_embedding_inputs, quick_facts
from airflow_provider_openai_batch.inputs.rules import (
    EMBEDDINGS_ENDPOINT,
    MAX_STORED_PROBLEMS,
    REQUIRED_BODY_FIELDS,
    BatchFileSummary,
    BatchLimits,
    ProblemLog,
    check_endpoint,
)

_BOM = b"\xef\xbb\xbf"

BLANK_LINE_PROBLEM = (
    "blank line (the Batch API does not document how it treats one); remove it, "
    "or pass skip_blank_lines=True to upload a copy without blank lines"
)


def is_blank(raw: bytes) -> bool:
    """A whitespace-only line (or an empty one); the first test settles almost every request line."""
    return raw[:1] != b"{" and not raw.strip()


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON (and the service) does not.
    raise ValueError(f"{name} is not valid JSON")


class _NoHash:
    def update(self, data: bytes) -> None:
        pass


_NO_HASH = _NoHash()


class BatchFileScanner:
    """The per-line rules of a batch input file, with the running totals a summary needs.

    ``feed`` takes raw lines in file order. It never keeps a line: only the custom_ids seen
    (to name the first line of a duplicate), the model and counters. Whoever supplies the
    lines also feeds ``stream_hasher`` (see :func:`iter_lines`), so the fingerprint covers
    exactly the bytes fed; with ``skip_blank_lines`` the scanner hashes the lines it keeps itself.

    A blank (whitespace-only) line before a request is a problem, unless ``skip_blank_lines``
    leaves it out of what is uploaded. Blank lines after the last request are not (a file may
    end in whitespace); they are uploaded as they are, unless skipped.
    """

    def __init__(self, endpoint: str, log: ProblemLog, *, skip_blank_lines: bool = False) -> None:
        self.endpoint = check_endpoint(endpoint)
        self.log = log
        self.skip_blank_lines = skip_blank_lines
        self.lines = 0
        self.requests = 0
        self.bytes = 0
        self.embedding_inputs = 0
        self.estimated_tokens = 0
        self.blank_lines_skipped = 0
        self.model: str | None = None
        self._model_line = 0
        self._required = REQUIRED_BODY_FIELDS[endpoint]
        self._count_inputs = endpoint == EMBEDDINGS_ENDPOINT
        self._seen: dict[str, int] = {}
        self._blank_lines: list[int] = []  # blank lines not yet followed by a request
        self._more_blank_lines = 0  # ... and how many more, past the problem cap
        self.hasher = hashlib.sha256()
        self._decode = json.JSONDecoder(parse_constant=_reject_constant).decode

    @property
    def stream_hasher(self) -> Any:
        """What the line supplier updates with every byte it reads: the fingerprint's hasher, unless skipping."""
        return _NO_HASH if self.skip_blank_lines else self.hasher

    def feed(self, raw: bytes) -> tuple[int, int] | None:
        """Check one line; return ``(embedding_inputs, estimated_tokens)``, or None for a blank line.

        A line the fast reader vouches for (:func:`~.request_shape.quick_facts`) costs one
        parse and a few comparisons; any other line gets the general checks, which name each
        problem. Nothing is re-encoded, and the line's character count is the token estimate.
        """
        self.lines += 1
        if raw[:1] != b"{" and not raw.strip():  # is_blank(raw), inlined on the hot path
            return self._blank(raw)
        if self._blank_lines or self._more_blank_lines:
            self._report_blank_lines()
        if self.skip_blank_lines:
            self.hasher.update(raw)
        self.bytes += len(raw)
        facts = quick_facts(raw, self.endpoint, self._required, self._count_inputs)
        if facts is not None and self._fits_other_lines(facts[0], facts[1]):
            inputs, tokens = facts[2], (facts[3] + 3) // 4
            self.requests += 1
            self.embedding_inputs += inputs
            self.estimated_tokens += tokens
            return inputs, tokens
        return self._check(raw)

    def _fits_other_lines(self, custom_id: str, model: str | None) -> bool:
        """The rules across lines, for a line valid on its own: a new custom_id, the file's one model."""
        if model is not None and model != self.model:
            if self.model is not None:
                return False
            self.model, self._model_line = model, self.lines
        return self._seen.setdefault(custom_id, self.lines) == self.lines

    def _blank(self, raw: bytes) -> None:
        if self.skip_blank_lines:
            self.blank_lines_skipped += 1
            return
        self.bytes += len(raw)
        if len(self._blank_lines) < MAX_STORED_PROBLEMS:
            self._blank_lines.append(self.lines)
        else:
            self._more_blank_lines += 1

    def _report_blank_lines(self) -> None:
        for line in self._blank_lines:
            self.log.add(line, None, BLANK_LINE_PROBLEM)
        self.log.count_more(self._more_blank_lines)
        self._blank_lines.clear()
        self._more_blank_lines = 0

    def _check(self, raw: bytes) -> tuple[int, int] | None:
        """The general checks of a (non-blank) line, explaining every problem found."""
        if self.lines == 1 and raw.startswith(_BOM):
            self.log.add(1, None, "the file starts with a UTF-8 byte order mark (BOM), which the service rejects")
            raw = raw[len(_BOM) :]
            if not raw.strip():
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
            blank_lines_skipped=self.blank_lines_skipped,
        )


def _over(what: str, value: int, limit: int) -> LineProblem:
    return LineProblem(None, None, f"the file has {value:,} {what}; a batch allows at most {limit:,}")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _not_object(field: str, value: object) -> str:
    return f"{field} must be a JSON object, got {_json_type(value)}"
