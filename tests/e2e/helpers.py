"""Small builders for e2e tests: batch input files."""

from __future__ import annotations

import json
from pathlib import Path


def write_chat_requests(path: Path, count: int = 5, *, model: str = "gpt-4o-mini", prefix: str = "req") -> Path:
    with path.open("w") as handle:
        for n in range(count):
            body = {"model": model, "messages": [{"role": "user", "content": f"Question {n}?"}]}
            line = {"custom_id": f"{prefix}-{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            handle.write(json.dumps(line) + "\n")
    return path
