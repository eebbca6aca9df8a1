"""Benchmark inputs shared by the scripts: a realistic chat-completions batch file of a chosen size.

Private to ``benchmarks/`` (``run_all.py`` skips files starting with ``_``); scripts import it as
``from _inputs import write_chat_input`` because they run with this folder on ``sys.path``.
"""

from __future__ import annotations

import json
import random

ENDPOINT = "/v1/chat/completions"
TEXT = (
    "grade the answer below for factual accuracy and cite the passage that supports your verdict "
    "the quick brown fox jumps over a lazy dog while the committee reviews quarterly figures "
    "explain why the sky appears blue at noon and red at sunset using simple physics"
)


def write_chat_input(path: str, megabytes: int, lines: int, *, min_line: int = 0) -> int:
    """Write ``lines`` grading requests totalling about ``megabytes`` MB (seeded); return the bytes written."""
    rng = random.Random(42)
    words = TEXT.split(" ")
    corpus = " ".join(rng.choice(words) for _ in range(400_000))
    target_line = max(min_line, megabytes * 1_000_000 // lines)
    written = 0
    with open(path, "wb") as handle:
        for i in range(lines):
            line = {
                "custom_id": f"eval-{i:06d}",
                "method": "POST",
                "url": ENDPOINT,
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "You are a strict grader. Answer PASS or FAIL."},
                        {"role": "user", "content": ""},
                    ],
                    "max_tokens": 16,
                    "temperature": 0,
                },
            }
            overhead = len(json.dumps(line, separators=(",", ":"))) + 1
            length = max(0, min(target_line - overhead, len(corpus) - 1))
            start = rng.randrange(0, len(corpus) - length)
            line["body"]["messages"][1]["content"] = corpus[start : start + length]
            data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            handle.write(data)
            written += len(data)
    return written
