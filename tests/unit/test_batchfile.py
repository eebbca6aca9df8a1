"""validate_batch_file: every rule, the limits, the summary, and every kind of source."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from upath import UPath

from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError, BatchParameterError
from airflow_provider_openai_batch.inputs import batchfile
from airflow_provider_openai_batch.inputs.batchfile import (
    REQUIRED_BODY_FIELDS,
    BatchFileSummary,
    BatchLimits,
    count_embedding_inputs,
    iter_lines,
    validate_batch_file,
)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
REPO = Path(__file__).resolve().parents[2]


def request(custom_id: str = "r1", model: str = "gpt-4o-mini", **changes: object) -> dict:
    """A valid chat line as a dict; ``changes`` replace top-level fields (None removes one)."""
    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": f"question {custom_id}"}]},
    }
    line.update(changes)
    return {key: value for key, value in line.items() if value is not None}


def with_body(custom_id: str = "r1", **body: object) -> dict:
    line = request(custom_id)
    line["body"] = {**line["body"], **body}
    return line


def jsonl(*lines: dict | bytes) -> bytes:
    """Lines as file bytes: dicts are JSON-encoded, bytes are taken as they are (newline added)."""
    return b"".join((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n" for item in lines)


def write(tmp_path: Path, data: bytes, name: str = "input.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rejection(path: object, endpoint: str = CHAT, **kwargs: object) -> BatchFileValidationError:
    with pytest.raises(BatchFileValidationError) as caught:
        validate_batch_file(path, endpoint, **kwargs)
    return caught.value


BAD_FILES = {
    "invalid JSON": (
        jsonl(request("a"), b'{"custom_id": "b", "method": "POST",', request("c"), b'{"custom_id" "d"}'),
        [
            (2, None, "not valid JSON: Expecting property name enclosed in double quotes (at the end of the line)"),
            (4, None, "not valid JSON: Expecting ':' delimiter (column 14)"),
        ],
    ),
    "missing custom_id": (jsonl(request(custom_id=None)), [(1, "custom_id", "missing required field 'custom_id'")]),
    "non-string custom_id": (
        jsonl(request(custom_id=7)),
        [(1, "custom_id", "custom_id must be a string, got a number")],
    ),
    "empty custom_id": (jsonl(request(custom_id="")), [(1, "custom_id", "custom_id must not be empty")]),
    "duplicate custom_id": (
        jsonl(request("a"), request("b"), request("a")),
        [(3, "custom_id", "custom_id 'a' already used on line 1")],
    ),
    "method GET": (jsonl(request(method="GET")), [(1, "method", "method must be 'POST', got 'GET'")]),
    "missing method": (jsonl(request(method=None)), [(1, "method", "missing required field 'method'")]),
    "url does not match the endpoint": (
        jsonl(request("a"), request("b", url=EMBEDDINGS)),
        [(2, "url", "url must be '/v1/chat/completions', got '/v1/embeddings'")],
    ),
    "body not an object": (jsonl(request(body="hello")), [(1, "body", "body must be a JSON object, got a string")]),
    "missing body": (jsonl(request(body=None)), [(1, "body", "missing required field 'body'")]),
    "stream true": (
        jsonl(with_body(stream=True)),
        [(1, "body.stream", "body.stream must be false or absent: the Batch API does not stream")],
    ),
    "missing messages": (
        jsonl(request(body={"model": "gpt-4o-mini"})),
        [(1, "body.messages", "missing body.messages, which /v1/chat/completions requires")],
    ),
    "mixed models": (
        jsonl(request("a"), request("b"), request("c", model="gpt-4o")),
        [
            (
                3,
                "body.model",
                "model 'gpt-4o' differs from model 'gpt-4o-mini' on line 1; a batch may use only one model",
            )
        ],
    ),
    "model not a string": (jsonl(request(model=4)), [(1, "body.model", "body.model must be a string, got a number")]),
    "line is an array": (jsonl(request("a"), b"[1, 2]"), [(2, None, "a line must be a JSON object, got an array")]),
    "NaN": (jsonl(b'{"custom_id": "a", "body": {"temperature": NaN}}'), [(1, None, "NaN is not valid JSON")]),
    "invalid UTF-8 on line 2": (
        jsonl(request("a"), b'{"custom_id": "b\xff"}', request("c")),
        [(2, None, "not valid UTF-8 (byte 17 of the line starts b'\\xff\"}\\n'")],
    ),
    "UTF-8 BOM": (b"\xef\xbb\xbf" + jsonl(request("a")), [(1, None, "UTF-8 byte order mark (BOM)")]),
    "empty file": (b"", [(None, None, "the file has no request lines (empty or whitespace only)")]),
    "whitespace-only file": (b"\n  \n\t\r\n", [(None, None, "the file has no request lines")]),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_is_rejected_with_line_numbers_and_messages(tmp_path, name):
    data, expected = BAD_FILES[name]
    error = rejection(write(tmp_path, data))
    found = [(p.line, p.field, p.message) for p in error.problems]
    assert [(line, field) for line, field, _ in found] == [(line, field) for line, field, _ in expected]
    for (_, _, message), (_, _, wanted) in zip(found, expected, strict=True):
        assert wanted in message
    assert error.total == len(error.problems)
    assert error.source == str(tmp_path / "input.jsonl")
    assert error.hint == ""


def test_whole_file_problem_names_no_line(tmp_path):
    error = rejection(write(tmp_path, b""))
    assert str(error).endswith("  - file: the file has no request lines (empty or whitespace only)")


def test_bom_is_reported_and_the_rest_of_the_line_still_checked(tmp_path):
    data = b"\xef\xbb\xbf" + jsonl(request("a", method="GET"), request("b"))
    error = rejection(write(tmp_path, data))
    assert [(p.line, p.field) for p in error.problems] == [(1, None), (1, "method")]


def test_every_problem_in_one_file_is_reported_with_the_total(tmp_path):
    lines = [request(f"ok{i}") for i in range(3)]
    lines += [request(f"get{i}", method="GET") for i in range(12)]
    lines += [b"not json", request("ok0")]
    error = rejection(write(tmp_path, jsonl(*lines)))
    assert error.total == 14
    assert [p.line for p in error.problems] == list(range(4, 18))
    assert error.problems[-1].message == "custom_id 'ok0' already used on line 1"
    text = str(error)
    assert text.startswith(f"Batch input file {tmp_path / 'input.jsonl'} has 14 problems; nothing was uploaded:")
    assert "line 4 [method]: method must be 'POST', got 'GET'" in text
    assert "line 13 [method]" in text
    assert "line 14 [method]" not in text
    assert text.endswith("  ... and 4 more")


def test_problems_are_capped_but_all_counted(tmp_path):
    data = jsonl(*[request(f"r{i}", method="GET") for i in range(1_500)])
    error = rejection(write(tmp_path, data))
    assert error.total == 1_500
    assert len(error.problems) == batchfile.MAX_STORED_PROBLEMS
    assert error.problems[-1].line == batchfile.MAX_STORED_PROBLEMS


def test_good_file_summary(tmp_path):
    lines = [request(f"r{i}") for i in range(5)]
    data = jsonl(*lines) + b"\n   \n"  # trailing blank lines are not requests
    path = write(tmp_path, data)
    summary = validate_batch_file(path, CHAT)
    assert summary == BatchFileSummary(
        requests=5,
        bytes=len(data),
        model="gpt-4o-mini",
        endpoint=CHAT,
        embedding_inputs=0,
        fingerprint=hashlib.sha256(data).hexdigest(),
        estimated_tokens=sum((len(json.dumps(line)) + 1 + 3) // 4 for line in lines),
    )
    assert summary.as_dict()["fingerprint"] == hashlib.sha256(data).hexdigest()
    assert json.loads(json.dumps(summary.as_dict())) == summary.as_dict()


def test_crlf_line_endings_and_non_ascii_text_are_accepted(tmp_path):
    line = json.dumps(with_body("a", messages=[{"role": "user", "content": "Grüße, 世界"}]), ensure_ascii=False)
    data = line.encode() + b"\r\n"
    assert validate_batch_file(write(tmp_path, data), CHAT).requests == 1


def test_stream_false_and_moderations_without_model_are_fine(tmp_path):
    assert validate_batch_file(write(tmp_path, jsonl(with_body(stream=False))), CHAT).requests == 1
    moderation = {"custom_id": "m", "method": "POST", "url": "/v1/moderations", "body": {"input": "hello"}}
    summary = validate_batch_file(write(tmp_path, jsonl(moderation), "mod.jsonl"), "/v1/moderations")
    assert summary.model is None


@pytest.mark.parametrize("endpoint", list(REQUIRED_BODY_FIELDS))
def test_required_body_fields_per_endpoint(tmp_path, endpoint):
    line = {"custom_id": "a", "method": "POST", "url": endpoint, "body": {"temperature": 0}}
    error = rejection(write(tmp_path, jsonl(line)), endpoint)
    assert [p.field for p in error.problems] == [f"body.{name}" for name in REQUIRED_BODY_FIELDS[endpoint]]


def test_unknown_endpoint_is_a_parameter_error_before_reading(tmp_path):
    with pytest.raises(BatchParameterError, match=r"'/v1/chat'.*accepts: /v1/responses, /v1/chat/completions"):
        validate_batch_file(tmp_path / "does-not-exist.jsonl", "/v1/chat")


# Limits ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def over_request_limit(tmp_path_factory) -> Path:
    """50,001 small valid chat requests (about 6 MB)."""
    path = tmp_path_factory.mktemp("limits") / "many.jsonl"
    template = '{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n'
    path.write_bytes("".join(template % i for i in range(50_001)).encode())
    return path


def test_too_many_requests_points_to_splitting(over_request_limit):
    error = rejection(over_request_limit)
    assert [(p.line, p.message) for p in error.problems] == [
        (None, "the file has 50,001 requests; a batch allows at most 50,000")
    ]
    assert "split_batch_file(" in error.hint
    assert "OpenAIBatchSplitOperator" in error.hint
    assert ".expand(" in error.hint
    assert error.hint in str(error)


def test_other_limits_for_compatible_services(over_request_limit):
    summary = validate_batch_file(over_request_limit, CHAT, limits=BatchLimits(max_requests=100_000))
    assert summary.requests == 50_001


def test_limit_problem_comes_first_when_line_problems_overflow(tmp_path):
    template = '{"custom_id":"r%d","method":"GET","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n'
    path = write(tmp_path, "".join(template % i for i in range(1_200)).encode())
    error = rejection(path, limits=BatchLimits(max_requests=1_000))
    assert error.total == 1_201
    assert error.problems[0].message == "the file has 1,200 requests; a batch allows at most 1,000"
    assert len(error.problems) == 1 + batchfile.MAX_STORED_PROBLEMS


def test_file_just_over_200_mb_is_rejected(tmp_path):
    limit = BatchLimits().max_bytes
    head, tail = json.dumps(with_body("PAD", messages=[{"role": "user", "content": "@"}])).encode().split(b"@")
    count = 8
    sizes = [limit // count] * (count - 1)
    sizes.append(limit + 1 - sum(sizes))
    path = tmp_path / "big.jsonl"
    try:
        with open(path, "wb") as handle:
            for index, size in enumerate(sizes):
                start = head.replace(b"PAD", b"r%d" % index)
                pad = size - len(start) - len(tail) - 1
                handle.write(start)
                for offset in range(0, pad, 1 << 24):
                    handle.write(b"x" * min(1 << 24, pad - offset))
                handle.write(tail + b"\n")
        assert path.stat().st_size == limit + 1
        error = rejection(path)
        assert [p.message for p in error.problems] == [
            "the file has 209,715,201 bytes; a batch allows at most 209,715,200"
        ]
        assert "split_batch_file(" in error.hint
    finally:
        path.unlink()


def test_embedding_inputs_over_the_limit_across_requests(tmp_path):
    def embedding(custom_id: str, inputs: object) -> dict:
        return {"custom_id": custom_id, "method": "POST", "url": EMBEDDINGS, "body": {"model": "e", "input": inputs}}

    lines = [embedding("a", ["t"] * 20_000), embedding("b", ["t"] * 30_000), embedding("c", "one more")]
    error = rejection(write(tmp_path, jsonl(*lines)), EMBEDDINGS)
    assert [p.message for p in error.problems] == [
        "the file has 50,001 embedding inputs; a batch allows at most 50,000"
    ]
    assert "split_batch_file(" in error.hint
    summary = validate_batch_file(write(tmp_path, jsonl(*lines[:2]), "ok.jsonl"), EMBEDDINGS)
    assert summary.embedding_inputs == 50_000


@pytest.mark.parametrize(
    ("value", "count"),
    [("text", 1), (["a", "b", "c"], 3), ([1, 2, 3], 1), ([[1, 2], [3]], 2), ([], 0), (None, 0)],
)
def test_count_embedding_inputs(value, count):
    assert count_embedding_inputs(value) == count


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_batch_limits_must_be_positive_ints(bad):
    with pytest.raises(BatchParameterError, match="max_requests must be a positive int"):
        BatchLimits(max_requests=bad)


# Sources -----------------------------------------------------------------------------------


class StandInStoragePath:
    """The duck type of Airflow's ObjectStoragePath that the validator relies on: ``open(mode)``."""

    def __init__(self, uri: str, data: bytes) -> None:
        self.uri, self.data, self.modes = uri, data, []

    def open(self, mode: str) -> io.BytesIO:
        self.modes.append(mode)
        return io.BytesIO(self.data)

    def __str__(self) -> str:
        return self.uri


@pytest.fixture
def good_data() -> bytes:
    return jsonl(*[request(f"r{i}") for i in range(20)])


def test_sources_give_the_same_summary(tmp_path, good_data):
    path = write(tmp_path, good_data)
    expected = validate_batch_file(str(path), CHAT)
    assert validate_batch_file(path, CHAT) == expected
    with open(path, "rb") as handle:
        assert validate_batch_file(handle, CHAT) == expected
        assert not handle.closed  # a caller's stream is left open
    assert validate_batch_file(io.BytesIO(good_data), CHAT) == expected
    stand_in = StandInStoragePath("s3://bucket/input.jsonl", good_data)
    assert validate_batch_file(stand_in, CHAT) == expected
    assert stand_in.modes == ["rb"]
    memory = UPath(f"memory://bucket-{uuid.uuid4().hex}/input.jsonl")
    memory.write_bytes(good_data)
    try:
        assert validate_batch_file(memory, CHAT) == expected
    finally:
        memory.unlink()


def test_storage_source_is_named_in_errors():
    stand_in = StandInStoragePath("s3://bucket/input.jsonl", jsonl(request(method="GET")))
    error = rejection(stand_in)
    assert str(error).startswith("Batch input file s3://bucket/input.jsonl has 1 problem;")


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_iter_lines_matches_file_iteration_and_hashes_every_byte(monkeypatch, block):
    data = b"first\n\nsecond line\r\n" + b"x" * 100 + b"\nlast without newline"
    monkeypatch.setattr(batchfile, "READ_BLOCK", block)
    hasher = hashlib.sha256()
    assert list(iter_lines(io.BytesIO(data), hasher)) == list(io.BytesIO(data))
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_input_layer_does_not_import_airflow():
    code = (
        "import sys\n"
        "import airflow_provider_openai_batch.inputs.batchfile, airflow_provider_openai_batch.api.params\n"
        "import airflow_provider_openai_batch.inputs.splitter, airflow_provider_openai_batch.inputs.builder\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
