"""The operator refuses bad input before a byte leaves the machine: the server sees nothing.

The operator is called directly (its checks run before it touches the task instance);
the fake server is real, and its counters prove that no upload and no batch happened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_openai_batch import OpenAIBatchOperator
from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError, BatchParameterError
from airflow_provider_openai_batch.testing import FakeOpenAIServer

URL = "/v1/chat/completions"


def line(custom_id="r", *, method="POST", url=URL, model="gpt-4o-mini", body=None, **extra) -> str:
    payload = {"custom_id": custom_id, "method": method, "url": url, "body": body}
    if body is None:
        payload["body"] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    payload.update(extra)
    return json.dumps(payload)


BAD_FILES = {
    "invalid_json": ([line("a"), "{not json"], [2]),
    "missing_custom_id": ([line("a"), json.dumps({"method": "POST", "url": URL, "body": {}})], [2]),
    "non_string_custom_id": ([line("a"), line(7)], [2]),
    "duplicate_custom_id": ([line("a"), line("b"), line("a")], [1, 3]),
    "method_get": ([line("a", method="GET")], [1]),
    "url_mismatch": ([line("a", url="/v1/embeddings")], [1]),
    "body_not_object": ([line("a", body=[1, 2])], [1]),
    "mixed_models": ([line("a"), line("b", model="gpt-4o")], [2]),
    "empty_file": ([], []),
}


@pytest.fixture
def server(monkeypatch):
    with FakeOpenAIServer() as fake:
        conn = {"conn_type": "openai_batch", "password": "test-key", "host": fake.url}
        monkeypatch.setenv("AIRFLOW_CONN_OPENAI_DEFAULT", json.dumps(conn))
        yield fake


def run(**kwargs) -> None:
    OpenAIBatchOperator(task_id="t", **kwargs).execute({"ti": None})


def assert_nothing_sent(server: FakeOpenAIServer) -> None:
    stats = server.stats()
    assert stats["uploads"] == 0 and stats["batches_created"] == 0
    assert stats["requests_total"] == 0


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_rejected_with_line_numbers_and_nothing_is_sent(server, tmp_path, case):
    lines, bad_lines = BAD_FILES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_text("".join(f"{text}\n" for text in lines))
    with pytest.raises(BatchFileValidationError) as caught:
        run(input_file=str(path))
    message = str(caught.value)
    assert str(path) in message and "nothing was uploaded" in message
    for number in bad_lines:
        assert f"line {number}" in message
    assert_nothing_sent(server)


def test_invalid_utf8_names_the_line(server, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(line("a").encode() + b"\n" + line("b").encode().replace(b"hi", b"h\xe9") + b"\n")
    with pytest.raises(BatchFileValidationError, match="line 2"):
        run(input_file=str(path))
    assert_nothing_sent(server)


def test_too_many_requests_points_to_the_splitter(server, tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as handle:
        for n in range(50_001):
            handle.write(line(f"r{n}") + "\n")
    with pytest.raises(BatchFileValidationError) as caught:
        run(input_file=str(path))
    assert "50,000" in str(caught.value) or "50000" in str(caught.value)
    assert "split_batch_file" in str(caught.value)
    assert_nothing_sent(server)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"endpoint": "/v1/unknown"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"metadata": {f"k{n}": "v" for n in range(15)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "64"),
        ({"metadata": {"k": "v" * 513}}, "512"),
        ({"output_expires_after": 3599}, "output_expires_after"),
        ({"output_expires_after": 2_592_001}, "output_expires_after"),
    ],
)
def test_bad_parameters_are_rejected_before_the_file_is_read(server, tmp_path, params, needle):
    path = tmp_path / "good.jsonl"
    path.write_text(line("a") + "\n")
    with pytest.raises(BatchParameterError, match=needle):
        run(input_file=str(path), **params)
    assert_nothing_sent(server)


def test_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(FileNotFoundError):
        run(input_file=str(tmp_path / "nope.jsonl"))
    assert_nothing_sent(server)


def test_storage_uri_inputs_are_validated_through_object_storage(server, tmp_path):
    path = Path(tmp_path / "bad.jsonl")
    path.write_text(line("a") + "\n" + line("a") + "\n")
    with pytest.raises(BatchFileValidationError, match="line 2"):
        run(input_file=f"file://{path}")
    assert_nothing_sent(server)
