"""The validator's fast reader never changes a verdict: every line gets the same facts and problems either way."""

from __future__ import annotations

import json

import pytest

from airflow_provider_openai_batch.inputs import scanner as scanner_module
from airflow_provider_openai_batch.inputs.request_shape import quick_facts
from airflow_provider_openai_batch.inputs.rules import REQUIRED_BODY_FIELDS, ProblemLog
from airflow_provider_openai_batch.inputs.scanner import BatchFileScanner

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"


def line(custom_id="a", url=CHAT, **body) -> bytes:
    body = body or {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode() + b"\n"


FILES = {
    "plain": (CHAT, [line("a"), line("b")]),
    "non-ASCII and CRLF": (CHAT, [line("a").replace(b"hi", "Grüße 世界".encode()).replace(b"\n", b"\r\n")]),
    "escapes": (CHAT, [line("a").replace(b"hi", b'\\u00e9\\n\\"')]),
    "extra fields, stream false": (CHAT, [line("a", model="m", messages=[], stream=False, temperature=0)]),
    "embeddings inputs": (
        EMBEDDINGS,
        [
            line("s", EMBEDDINGS, model="e", input="one"),
            line("l", EMBEDDINGS, model="e", input=["x", "y", "z"]),
            line("t", EMBEDDINGS, model="e", input=[1, 2, 3]),
            line("n", EMBEDDINGS, model="e", input=[[1, 2], [3]]),
        ],
    ),
    "moderation without model": ("/v1/moderations", [line("a", "/v1/moderations", input="text")]),
    "duplicate key, last wins": (CHAT, [b'{"custom_id": 1, ' + line("a")[1:]]),
    "problems": (
        CHAT,
        [
            line("a"),
            line("a"),
            line("b", model="other", messages=[]),
            line("c", model="gpt-4o-mini", messages=None),
            line("d", model="gpt-4o-mini", messages=[], stream=True),
            line("e").replace(b"POST", b"GET"),
            b'{"custom_id": "f", "method": "POST", "url": "/v1/chat/completions", "body": {"model": 4}}\n',
            b'{"custom_id": "g\xff"}\n',
            b'{"custom_id": "h", "body": {"x": NaN}}\n',
            b"[1]\n",
        ],
    ),
}


def scan(endpoint: str, lines: list[bytes]) -> tuple[list, list, dict]:
    log = ProblemLog()
    scanner = BatchFileScanner(endpoint, log)
    facts = [scanner.feed(raw) for raw in lines]
    problems = [(p.line, p.field, p.message) for p in log.problems]
    return facts, problems, scanner.summary().as_dict()


@pytest.mark.parametrize("name", list(FILES))
def test_fast_and_general_checks_agree(name, monkeypatch):
    endpoint, lines = FILES[name]
    fast = scan(endpoint, lines)
    monkeypatch.setattr(scanner_module, "quick_facts", lambda *args: None)
    assert scan(endpoint, lines) == fast


def test_the_fast_reader_vouches_for_valid_lines_only():
    required = REQUIRED_BODY_FIELDS[CHAT]
    assert quick_facts(line("a"), CHAT, required, False) == ("a", "gpt-4o-mini", 0, len(line("a")))
    assert quick_facts(line("a", model="m", messages=[], stream=True), CHAT, required, False) is None
    assert quick_facts(line("a", model="m"), CHAT, required, False) is None  # no messages
    assert quick_facts(line("").replace(b"hi", b"\xff"), CHAT, required, False) is None
