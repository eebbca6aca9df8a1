"""write_batch_requests and the request helpers: what they write passes the validator, or nothing is written."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest
from pydantic import ValidationError
from upath import UPath

from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError, BatchParameterError
from airflow_provider_openai_batch.inputs.batchfile import BatchLimits, validate_batch_file
from airflow_provider_openai_batch.inputs.builder import (
    BatchRequest,
    chat_request,
    embedding_request,
    requests_from_template,
    responses_request,
    write_batch_requests,
)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"


def rejection(destination: object, requests: list, endpoint: str = CHAT, **kwargs: object) -> BatchFileValidationError:
    with pytest.raises(BatchFileValidationError) as caught:
        write_batch_requests(destination, requests, endpoint, **kwargs)
    return caught.value


def test_written_file_passes_the_validator_with_the_same_summary(tmp_path):
    path = tmp_path / "nested" / "eval.jsonl"
    requests = (chat_request(f"q{i}", "gpt-4o-mini", f"Question {i}?", system="Grade it.") for i in range(100))
    summary = write_batch_requests(path, requests, CHAT)
    assert summary == validate_batch_file(path, CHAT)
    assert summary.requests == 100
    assert summary.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert os.listdir(tmp_path / "nested") == ["eval.jsonl"]


def test_mappings_get_method_and_url_and_compact_stable_json(tmp_path):
    path = tmp_path / "in.jsonl"
    body = {"model": "m", "messages": [{"role": "user", "content": "Grüße"}], "temperature": 0}
    write_batch_requests(path, [{"custom_id": "a", "body": body}], CHAT)
    expected = '{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":' + json.dumps(
        body, ensure_ascii=False, separators=(",", ":")
    )
    assert path.read_text(encoding="utf-8") == expected + "}\n"


def test_duplicate_custom_id_is_rejected_and_nothing_is_written(tmp_path):
    requests = [chat_request(cid, "m", "hi") for cid in ("a", "b", "c", "b")]
    error = rejection(tmp_path / "in.jsonl", requests)
    assert [(p.line, p.field, p.message) for p in error.problems] == [
        (4, "custom_id", "custom_id 'b' already used on line 2")
    ]
    assert os.listdir(tmp_path) == []


def test_a_request_for_another_endpoint_is_caught(tmp_path):
    error = rejection(tmp_path / "in.jsonl", [embedding_request("a", "e", "text")], CHAT)
    assert [(p.line, p.field) for p in error.problems] == [(1, "url"), (1, "body.messages")]
    assert error.problems[0].message == "url must be '/v1/chat/completions', got '/v1/embeddings'"


def test_bad_requests_keep_their_line_numbers(tmp_path):
    requests = [
        chat_request("a", "m", "hi"),
        {"custom_id": "b", "body": {"model": "m", "messages": []}, "colour": "red"},
        {"body": {"model": "m", "messages": []}},
        chat_request("a", "m", "again"),
        chat_request("c", "m", "hi", temperature=float("nan")),
        "not a request",
    ]
    error = rejection(tmp_path / "in.jsonl", requests)
    found = [(p.line, p.field) for p in error.problems]
    assert found == [(2, "colour"), (3, "custom_id"), (4, "custom_id"), (5, "body"), (6, None)]
    assert "already used on line 1" in error.problems[2].message
    assert "Out of range float values are not JSON compliant" in error.problems[3].message
    assert os.listdir(tmp_path) == []


def test_limits_apply_only_when_asked_and_point_to_splitting(tmp_path):
    requests = [chat_request(f"r{i}", "m", "hi") for i in range(3)]
    error = rejection(tmp_path / "in.jsonl", requests, limits=BatchLimits(max_requests=2))
    assert error.problems[0].message == "the file has 3 requests; a batch allows at most 2"
    assert "split_batch_file(" in error.hint
    assert not (tmp_path / "in.jsonl").exists()
    assert write_batch_requests(tmp_path / "in.jsonl", requests, CHAT, limits=BatchLimits()).requests == 3


def test_an_input_over_the_limits_is_written_for_splitting(tmp_path):
    requests = (embedding_request(f"e{i}", "e", ["text"] * 10_000) for i in range(6))
    summary = write_batch_requests(tmp_path / "backfill.jsonl", requests, EMBEDDINGS)
    assert summary.embedding_inputs == 60_000
    with pytest.raises(BatchFileValidationError, match="60,000 embedding inputs"):
        validate_batch_file(tmp_path / "backfill.jsonl", EMBEDDINGS)


def test_empty_input_is_rejected(tmp_path):
    error = rejection(tmp_path / "in.jsonl", [])
    assert error.problems[0].message.startswith("the file has no request lines")
    assert not (tmp_path / "in.jsonl").exists()


def test_a_failing_generator_leaves_the_previous_file_untouched(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("previous\n")

    def requests():
        yield chat_request("a", "m", "hi")
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        write_batch_requests(path, requests(), CHAT)
    assert path.read_text() == "previous\n"
    assert os.listdir(tmp_path) == ["in.jsonl"]


def test_storage_destination(tmp_path):
    folder = UPath(f"memory://bucket-{uuid.uuid4().hex}/inputs")
    target = folder / "eval.jsonl"
    try:
        summary = write_batch_requests(target, [chat_request(f"q{i}", "m", "hi") for i in range(3)], CHAT)
        assert summary == validate_batch_file(target, CHAT)
        with pytest.raises(BatchFileValidationError):
            write_batch_requests(folder / "bad.jsonl", [chat_request("x", "m", "a"), chat_request("x", "m", "b")], CHAT)
        assert not (folder / "bad.jsonl").exists()
    finally:
        folder.fs.rm(folder.path, recursive=True)


def test_unknown_endpoint_is_refused_before_writing(tmp_path):
    with pytest.raises(BatchParameterError, match="Unknown batch endpoint"):
        write_batch_requests(tmp_path / "in.jsonl", [], "/v1/nope")
    assert os.listdir(tmp_path) == []


# Helpers -----------------------------------------------------------------------------------


def test_chat_request():
    request = chat_request("q1", "gpt-4o-mini", "2+2?", system="Answer briefly.", max_completion_tokens=5)
    assert request.url == CHAT
    assert request.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2+2?"}],
        "max_completion_tokens": 5,
    }


def test_embedding_and_responses_requests():
    assert embedding_request("e", "text-embedding-3-small", ["a", "b"], dimensions=256).model_dump() == {
        "custom_id": "e",
        "body": {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 256},
        "method": "POST",
        "url": EMBEDDINGS,
    }
    request = responses_request("r", "gpt-4.1", "Summarise.", instructions="Be short.")
    assert (request.url, request.body) == (
        RESPONSES,
        {"model": "gpt-4.1", "input": "Summarise.", "instructions": "Be short."},
    )


def test_params_cannot_replace_the_helper_fields():
    with pytest.raises(BatchParameterError, match="messages is set by the helper"):
        chat_request("q", "m", "hi", messages=[])


def test_batch_request_validation():
    with pytest.raises(ValidationError):
        BatchRequest(custom_id="", body={})
    with pytest.raises(ValidationError):
        BatchRequest(custom_id=5, body={})
    with pytest.raises(ValidationError):
        BatchRequest(custom_id="a", body={}, method="GET")


QUESTIONS = [
    {"id": 1, "question": "What is 2+2?", "answer": "4"},
    {"id": 2, "question": "Capital of France?", "answer": "Paris"},
]


def test_requests_from_template_builds_an_eval(tmp_path):
    requests = requests_from_template(
        iter(QUESTIONS),
        model="gpt-4o-mini",
        template="Q: {question}\nExpected: {answer}\nGrade PASS or FAIL.",
        system="You are a grader.",
        temperature=0,
    )
    summary = write_batch_requests(tmp_path / "eval.jsonl", requests, CHAT)
    assert summary.requests == 2
    lines = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["1", "2"]
    assert lines[1]["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a grader."},
            {"role": "user", "content": "Q: Capital of France?\nExpected: Paris\nGrade PASS or FAIL."},
        ],
        "temperature": 0,
    }


def test_requests_from_template_for_other_endpoints():
    [responses, _] = requests_from_template(QUESTIONS, model="m", template="{question}", endpoint=RESPONSES, system="S")
    assert responses.body == {"model": "m", "input": "What is 2+2?", "instructions": "S"}
    [embedding, _] = requests_from_template(
        QUESTIONS, model="e", template="{answer}", endpoint=EMBEDDINGS, id_field="answer"
    )
    assert (embedding.custom_id, embedding.url, embedding.body) == ("4", EMBEDDINGS, {"model": "e", "input": "4"})


def test_requests_from_template_errors():
    with pytest.raises(BatchParameterError, match=r"record 2: template '\{question\} \{source\}' cannot be filled"):
        list(
            requests_from_template(
                [{"id": 1, "question": "q", "source": "s"}, QUESTIONS[0]], model="m", template="{question} {source}"
            )
        )
    with pytest.raises(BatchParameterError, match="record 1 has no 'key' for the custom_id"):
        list(requests_from_template(QUESTIONS, model="m", template="{question}", id_field="key"))
    with pytest.raises(BatchParameterError, match="requests_from_template supports"):
        requests_from_template(QUESTIONS, model="m", template="{question}", endpoint="/v1/moderations")
    with pytest.raises(BatchParameterError, match="has no system prompt"):
        requests_from_template(QUESTIONS, model="m", template="{question}", endpoint=EMBEDDINGS, system="S")
