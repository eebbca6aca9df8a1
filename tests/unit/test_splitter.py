"""split_batch_file: shards that each fit every limit, concatenate back to the input, and are reproducible."""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import pytest
from upath import UPath

from airflow_provider_openai_batch.api.exceptions import BatchFileValidationError, BatchParameterError
from airflow_provider_openai_batch.inputs.batchfile import BatchLimits, validate_batch_file
from airflow_provider_openai_batch.inputs.splitter import plan_shards, split_batch_file

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
CHAT_LINE = '{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n'


def chat_file(path: Path, count: int, line: str = CHAT_LINE) -> bytes:
    data = "".join(line % i for i in range(count)).encode()
    path.write_bytes(data)
    return data


def embedding_line(custom_id: str, inputs: int) -> bytes:
    body = {"model": "e", "input": [f"text {i}" for i in range(inputs)]}
    line = {"custom_id": custom_id, "method": "POST", "url": EMBEDDINGS, "body": body}
    return json.dumps(line).encode() + b"\n"


def read_all(locations: list[str]) -> bytes:
    return b"".join(Path(location).read_bytes() for location in locations)


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> tuple[Path, bytes]:
    """120,000 requests: too many for one batch."""
    path = tmp_path_factory.mktemp("big") / "questions.jsonl"
    return path, chat_file(path, 120_000)


def test_120k_requests_become_3_valid_shards_that_concatenate_to_the_input(big_input, tmp_path):
    source, data = big_input
    shards = split_batch_file(source, tmp_path / "shards", CHAT)
    assert shards == [str(tmp_path / "shards" / f"questions-0000{i}.jsonl") for i in range(3)]
    assert [validate_batch_file(shard, CHAT).requests for shard in shards] == [50_000, 50_000, 20_000]
    assert read_all(shards) == data


def test_byte_limit(tmp_path):
    data = chat_file(tmp_path / "in.jsonl", 50)
    line_size = len(CHAT_LINE % 10)
    shards = split_batch_file(tmp_path / "in.jsonl", tmp_path / "out", CHAT, max_bytes=10 * line_size)
    sizes = [os.path.getsize(shard) for shard in shards]
    assert len(shards) == 5
    assert max(sizes) <= 10 * line_size
    for shard in shards:
        validate_batch_file(shard, CHAT, limits=BatchLimits(max_bytes=10 * line_size))
    assert read_all(shards) == data


def test_embedding_input_limit(tmp_path):
    data = b"".join(embedding_line(f"e{i}", 3 + i % 4) for i in range(40))
    (tmp_path / "emb.jsonl").write_bytes(data)
    shards = split_batch_file(tmp_path / "emb.jsonl", tmp_path / "out", EMBEDDINGS, max_embedding_inputs=20)
    summaries = [
        validate_batch_file(shard, EMBEDDINGS, limits=BatchLimits(max_embedding_inputs=20)) for shard in shards
    ]
    assert sum(s.embedding_inputs for s in summaries) == sum(3 + i % 4 for i in range(40))
    assert all(14 < s.embedding_inputs <= 20 for s in summaries[:-1])  # greedy: a shard closes only when full
    assert read_all(shards) == data


def test_token_budget(tmp_path):
    data = chat_file(tmp_path / "in.jsonl", 100)
    whole = validate_batch_file(tmp_path / "in.jsonl", CHAT).estimated_tokens
    budget = whole // 4
    shards = split_batch_file(tmp_path / "in.jsonl", tmp_path / "out", CHAT, max_tokens_per_shard=budget)
    tokens = [validate_batch_file(shard, CHAT).estimated_tokens for shard in shards]
    assert len(shards) >= 4
    assert all(t <= budget for t in tokens)
    assert sum(tokens) == whole
    assert read_all(shards) == data


def test_plan_shards_describes_the_cut_without_writing(tmp_path):
    data = chat_file(tmp_path / "in.jsonl", 25)
    plan = plan_shards(tmp_path / "in.jsonl", CHAT, limits=BatchLimits(max_requests=10))
    assert [(s.index, s.first_line, s.last_line, s.requests) for s in plan.shards] == [
        (0, 1, 10, 10),
        (1, 11, 20, 10),
        (2, 21, 25, 5),
    ]
    assert sum(s.bytes for s in plan.shards) == len(data) == plan.summary.bytes
    assert plan.lines == 25
    assert os.listdir(tmp_path) == ["in.jsonl"]


def test_same_input_gives_the_same_shards_and_stale_shards_are_removed(tmp_path):
    data = chat_file(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out"
    first = split_batch_file(tmp_path / "in.jsonl", out, CHAT, max_requests=4)
    contents = [Path(shard).read_bytes() for shard in first]
    (out / "notes.txt").write_text("keep me")
    (out / "other-00009.jsonl").write_text("another prefix")
    again = split_batch_file(tmp_path / "in.jsonl", out, CHAT, max_requests=4)
    assert again == first
    assert [Path(shard).read_bytes() for shard in again] == contents
    fewer = split_batch_file(tmp_path / "in.jsonl", out, CHAT, max_requests=10)
    assert len(fewer) == 3
    assert sorted(os.listdir(out)) == [
        "in-00000.jsonl",
        "in-00001.jsonl",
        "in-00002.jsonl",
        "notes.txt",
        "other-00009.jsonl",
    ]
    assert read_all(fewer) == data


def test_a_line_too_large_for_any_shard_is_an_error(tmp_path):
    source = tmp_path / "in.jsonl"
    chat_file(source, 5)
    huge = (CHAT_LINE % 99).replace('"messages":[]', '"messages":[{"role":"user","content":"%s"}]' % ("x" * 500))
    with source.open("a") as handle:
        handle.write(huge)
    with pytest.raises(BatchFileValidationError) as caught:
        split_batch_file(source, tmp_path / "out", CHAT, max_bytes=400)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (6, f"the line is {len(huge)} bytes; a shard holds at most 400, so no shard can take this request")
    ]
    assert not (tmp_path / "out").exists()


def test_too_many_inputs_or_tokens_in_one_line(tmp_path):
    (tmp_path / "emb.jsonl").write_bytes(embedding_line("a", 2) + embedding_line("b", 30))
    with pytest.raises(BatchFileValidationError, match="line 2: the line has 30 embedding inputs; a shard holds 20"):
        split_batch_file(tmp_path / "emb.jsonl", tmp_path / "out", EMBEDDINGS, max_embedding_inputs=20)
    with pytest.raises(
        BatchFileValidationError, match=r"line 1: the line is about \d+ tokens; a shard holds at most 5,"
    ):
        split_batch_file(tmp_path / "emb.jsonl", tmp_path / "out", EMBEDDINGS, max_tokens_per_shard=5)


def test_bad_lines_are_reported_before_anything_is_written(tmp_path):
    lines = [CHAT_LINE % i for i in range(10)]
    lines[4] = lines[4].replace('"POST"', '"GET"')
    lines[7] = "{oops\n"
    (tmp_path / "in.jsonl").write_text("".join(lines))
    with pytest.raises(BatchFileValidationError) as caught:
        split_batch_file(tmp_path / "in.jsonl", tmp_path / "out", CHAT, max_requests=3)
    assert [(p.line, p.field) for p in caught.value.problems] == [(5, "method"), (8, None)]
    assert not (tmp_path / "out").exists()


def test_blank_lines_between_requests_are_refused_by_default(tmp_path):
    data = b"\n" + (CHAT_LINE % 1).encode() + b"\n  \n" + (CHAT_LINE % 2).encode() + (CHAT_LINE % 3).encode() + b"\n"
    (tmp_path / "in.jsonl").write_bytes(data)
    with pytest.raises(BatchFileValidationError) as caught:
        split_batch_file(tmp_path / "in.jsonl", tmp_path / "out", CHAT, max_requests=1)
    assert [(p.line, p.field) for p in caught.value.problems] == [(1, None), (3, None), (4, None)]
    assert all("blank line" in p.message for p in caught.value.problems)
    assert not (tmp_path / "out").exists()


def test_with_skip_blank_lines_the_shards_hold_the_requests_without_the_blank_lines(tmp_path):
    requests = [(CHAT_LINE % i).encode() for i in range(1, 4)]
    data = b"\n" + requests[0] + b"\n\r\n" + requests[1] + b"  \n" + requests[2] + b"\n\n"
    (tmp_path / "in.jsonl").write_bytes(data)
    shards = split_batch_file(tmp_path / "in.jsonl", tmp_path / "out", CHAT, max_requests=2, skip_blank_lines=True)

    assert read_all(shards) == b"".join(requests)
    assert [validate_batch_file(shard, CHAT).requests for shard in shards] == [2, 1]
    plan = plan_shards(tmp_path / "in.jsonl", CHAT, limits=BatchLimits(max_requests=2), skip_blank_lines=True)
    assert plan.summary.fingerprint == validate_batch_file(io.BytesIO(b"".join(requests)), CHAT).fingerprint
    assert [shard.bytes for shard in plan.shards] == [len(requests[0] + requests[1]), len(requests[2])]


def test_trailing_blank_lines_stay_in_the_last_shard_so_shards_concatenate_to_the_input(tmp_path):
    data = (CHAT_LINE % 1).encode() + (CHAT_LINE % 2).encode() + b"\n   \n"
    (tmp_path / "in.jsonl").write_bytes(data)
    shards = split_batch_file(tmp_path / "in.jsonl", tmp_path / "out", CHAT, max_requests=1)
    assert [validate_batch_file(shard, CHAT).requests for shard in shards] == [1, 1]
    assert read_all(shards) == data


def test_storage_destination(tmp_path):
    data = chat_file(tmp_path / "in.jsonl", 12)
    destination = UPath(f"memory://bucket-{uuid.uuid4().hex}/runs/2024-01-01")
    try:
        shards = split_batch_file(tmp_path / "in.jsonl", destination, CHAT, max_requests=5, prefix="eval")
        assert shards == [f"{destination}/eval-0000{i}.jsonl" for i in range(3)]
        assert b"".join(UPath(shard).read_bytes() for shard in shards) == data
        assert validate_batch_file(UPath(shards[0]), CHAT).requests == 5
        (destination / "eval-00003.jsonl").write_bytes(b"stale")
        assert split_batch_file(tmp_path / "in.jsonl", destination, CHAT, max_requests=5, prefix="eval") == shards
        assert not (destination / "eval-00003.jsonl").exists()
    finally:
        destination.fs.rm(destination.path, recursive=True)


def test_seekable_stream_source_is_read_from_where_it_stands(tmp_path):
    data = "".join(CHAT_LINE % i for i in range(6)).encode()
    stream = io.BytesIO(b"skipped header\n" + data)
    stream.readline()
    shards = split_batch_file(stream, tmp_path / "out", CHAT, max_requests=4)
    assert [Path(shard).name for shard in shards] == ["batch-00000.jsonl", "batch-00001.jsonl"]
    assert read_all(shards) == data


def test_unseekable_stream_is_refused(tmp_path):
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

    with pytest.raises(TypeError, match="seekable stream"):
        split_batch_file(Pipe(), tmp_path / "out", CHAT)


def test_source_changed_between_the_passes_publishes_nothing(tmp_path):
    class ChangingSource:
        def __init__(self) -> None:
            self.reads = 0

        def open(self, mode: str) -> io.BytesIO:
            self.reads += 1
            model = "m" if self.reads == 1 else "n"
            return io.BytesIO("".join(CHAT_LINE.replace('"m"', f'"{model}"') % i for i in range(6)).encode())

        def __str__(self) -> str:
            return "s3://bucket/changing.jsonl"

    out = tmp_path / "out"
    with pytest.raises(BatchFileValidationError, match="changed while it was being split"):
        split_batch_file(ChangingSource(), out, CHAT, max_requests=4)
    assert os.listdir(out) == []


def test_prefix_rules(tmp_path):
    chat_file(tmp_path / "my questions.v2.jsonl", 2)
    [shard] = split_batch_file(tmp_path / "my questions.v2.jsonl", tmp_path / "out", CHAT)
    assert Path(shard).name == "my_questions.v2-00000.jsonl"
    with pytest.raises(BatchParameterError, match="without slashes"):
        split_batch_file(tmp_path / "my questions.v2.jsonl", tmp_path / "out", CHAT, prefix="a/b")


def test_refuses_to_overwrite_its_own_source(tmp_path):
    chat_file(tmp_path / "part-00001.jsonl", 3)
    with pytest.raises(BatchParameterError, match="would be overwritten by its own shards"):
        split_batch_file(tmp_path / "part-00001.jsonl", tmp_path, CHAT, prefix="part")


def test_uri_string_destination_is_refused(tmp_path):
    chat_file(tmp_path / "in.jsonl", 3)
    with pytest.raises(TypeError, match="pass an ObjectStoragePath"):
        split_batch_file(tmp_path / "in.jsonl", "s3://bucket/shards", CHAT)


@pytest.mark.parametrize("budget", [0, -3, True, 1.5])
def test_token_budget_must_be_positive(tmp_path, budget):
    chat_file(tmp_path / "in.jsonl", 3)
    with pytest.raises(BatchParameterError, match="max_tokens_per_shard"):
        split_batch_file(tmp_path / "in.jsonl", tmp_path / "out", CHAT, max_tokens_per_shard=budget)
