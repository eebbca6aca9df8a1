"""The fake server's side of the UI API benchmark: N batches in mixed states, created over real HTTP.

The states are interleaved in creation order (one cycle of ten per ten batches), so the batches
still in flight are spread over every list page, as they are when long and short batches run
side by side: a refresh cannot find them all on the first pages. Floor 1: no Airflow here.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx

from airflow_provider_openai_batch.testing import FakeOpenAIServer

KEY = "sk-bench-ui-api-never-shown"
LONG = 24 * 3600.0
CYCLE = (
    "in_progress",
    "completed",
    "in_progress",
    "failed",
    "completed",
    "validating",
    "expired",
    "in_progress",
    "cancelled",
    "completed",
)
"""Per ten batches: 4 in flight (3 in_progress, 1 validating), 3 completed, failed, expired, cancelled."""
TIMINGS = {
    "in_progress": {"validating_seconds": 0.0, "in_progress_seconds": LONG, "expire_after_fraction": None},
    "validating": {"validating_seconds": LONG, "in_progress_seconds": LONG, "expire_after_fraction": None},
    "completed": {"validating_seconds": 0.0, "in_progress_seconds": 0.2, "expire_after_fraction": None},
    "failed": {"validating_seconds": 0.0, "in_progress_seconds": 0.2, "expire_after_fraction": None},
    "expired": {"validating_seconds": 0.0, "in_progress_seconds": 0.4, "expire_after_fraction": 0.5},
    "cancelled": {"validating_seconds": 0.0, "in_progress_seconds": LONG, "expire_after_fraction": None},
}
LINES = 4
SETTLE_TIMEOUT = 120.0


def _input_file(http: httpx.Client) -> str:
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}"}]},
        }
        for i in range(LINES)
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    answer = http.post("/files", files={"file": ("in.jsonl", body)}, data={"purpose": "batch"})
    answer.raise_for_status()
    return answer.json()["id"]


def seed(server: FakeOpenAIServer, count: int) -> dict[str, str]:
    """Create ``count`` batches (oldest first); returns batch id -> the state it is meant to reach."""
    intended: dict[str, str] = {}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        file_id = _input_file(http)
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"team": "evals"},
        }
        for n in range(count):
            state = CYCLE[n % len(CYCLE)]
            server.configure(cancelling_seconds=0.0, **TIMINGS[state])
            if state == "failed":
                server.fail_next_batches(1, code="token_limit_exceeded")
            answer = http.post("/batches", json=body)
            answer.raise_for_status()
            intended[answer.json()["id"]] = state
        for batch_id, state in intended.items():
            if state == "cancelled":
                http.post(f"/batches/{batch_id}/cancel").raise_for_status()
    _settle(server, intended)
    return intended


def _settle(server: FakeOpenAIServer, intended: dict[str, str]) -> None:
    """Wait until every batch shows its intended state (the short-lived ones end within a second)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        now = {b["id"]: b["status"] for b in server.batches()}
        wrong = {i: (want, now.get(i)) for i, want in intended.items() if now.get(i) != want}
        if not wrong:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(wrong)} batches did not reach their state, e.g. {list(wrong.items())[:3]}")
        time.sleep(0.2)


def state_counts(server: FakeOpenAIServer) -> Counter:
    return Counter(b["status"] for b in server.batches())


def api_requests(server: FakeOpenAIServer) -> Counter:
    """API requests received so far, per ``METHOD route`` (the fake's own log)."""
    return Counter(f"{r.method} {r.route}" for r in server.requests)
