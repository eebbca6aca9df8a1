"""Benchmark: API requests to watch a fleet of 1,000 in-flight batches, one watcher vs one trigger per batch.

Measured in this run against the bundled fake server (real loopback HTTP, requests counted by the
server): ``OpenAIBatchEventTrigger.run()`` (the watcher's own loop; on Airflow 3.3 the shared poll
makes the same requests once for every watcher of the connection) watches 1,000 batches in flight
plus 200 older finished ones. Each poll pages the list endpoint newest first down to the oldest
batch still running: ``ceil(1000 / 100) = 10`` requests. A few batches end during the run and each
fires one event, without more requests.

Baseline: a deferred ``OpenAIBatchTrigger`` (or sensor) per batch makes one ``GET /batches/{id}``
per batch per poll: 1,000 requests per poll interval, counted the same way (its polls are run once
for every batch, here concurrently over the same pooled client).

Figures per poll interval (requests per minute at the default 60 s interval are the same numbers).
The webhook-to-consumer-run latency is measured by ``make test-events`` in a real deployment; it
writes ``benchmarks/.data/events_figures.json``, reported here when present; its "baseline" column
is the poll interval of that asset's watcher (3600 s), the wait a batch would have without webhooks.

Output: human-readable lines, then one ``BENCH_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from pathlib import Path

import httpx

from airflow_provider_openai_batch.testing import FakeOpenAIServer

KEY = "sk-bench-fleet-watch"
EVENTS_FIGURES = Path(__file__).resolve().parent / ".data" / "events_figures.json"


def create_batches(server: FakeOpenAIServer, count: int) -> list[str]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        line = {
            "custom_id": "q",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        }
        file_id = http.post(
            "/files", files={"file": ("in.jsonl", json.dumps(line) + "\n")}, data={"purpose": "batch"}
        ).json()["id"]
        body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        return [http.post("/batches", json=body).json()["id"] for _ in range(count)]


def list_requests(server: FakeOpenAIServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.route == "/v1/batches")


def get_requests(server: FakeOpenAIServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.route == "/v1/batches/{batch_id}")


async def watch(server: FakeOpenAIServer, looks: int, interval: float, end: list[str]) -> tuple[list[int], int]:
    """Run the real watcher for ``looks`` looks, ending some batches midway: list requests per look, events."""
    from airflow_provider_openai_batch import OpenAIBatchEventTrigger
    from airflow_provider_openai_batch.triggers import events as events_module

    trigger = OpenAIBatchEventTrigger("openai_bench", poll_interval=interval, lookback=10**10)
    per_look: list[int] = []
    real_scan = events_module.scan

    async def counted_scan(*args, **kwargs):  # the server counts; this only marks where each look ends
        before = list_requests(server)
        snapshot = await real_scan(*args, **kwargs)
        per_look.append(list_requests(server) - before)
        if len(per_look) == looks // 2:
            for batch_id in end:
                server.expire_batch(batch_id, 1.0)
        return snapshot

    events_module.scan = counted_scan
    events = 0

    async def consume() -> None:
        nonlocal events
        async for _ in trigger.run():
            events += 1

    task = asyncio.create_task(consume())
    try:
        while len(per_look) < looks:
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        events_module.scan = real_scan
    return per_look, events


async def per_batch_baseline(server: FakeOpenAIServer, ids: list[str]) -> int:
    """One poll of one trigger per batch: each gets its own batch (what deferred waits do)."""
    from airflow_provider_openai_batch.hooks.batch import OpenAIBatchHook

    hook = OpenAIBatchHook("openai_bench")
    before = get_requests(server)
    await asyncio.gather(*(hook.aget_batch(batch_id) for batch_id in ids))
    return get_requests(server) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--looks", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="200 batches, 6 looks")
    args = parser.parse_args()
    count, looks = (200, 6) if args.quick else (args.batches, args.looks)
    interval = 1.0
    with FakeOpenAIServer(api_key=KEY, validating_seconds=0, in_progress_seconds=1, finalizing_seconds=0) as server:
        history = create_batches(server, 200)
        time.sleep(2.5)  # the 200 older batches finish: history the watcher must not re-read
        server.configure(in_progress_seconds=24 * 3600)
        started = time.perf_counter()
        ids = create_batches(server, count)
        print(f"created {count} in-flight batches (+200 finished) in {time.perf_counter() - started:.1f}s")
        conn = {"conn_type": "openai_batch", "password": KEY, "host": server.url}
        os.environ["AIRFLOW_CONN_OPENAI_BENCH"] = json.dumps(conn)
        per_look, events = asyncio.run(watch(server, looks, interval, ids[-3:]))
        baseline = asyncio.run(per_batch_baseline(server, ids))
    # The first looks cannot yet vouch for the batches created in the horizon's own second (it is not
    # over when they are taken): one page more. Later looks stop at the horizon's last batch.
    steady = max(per_look[2:])
    goal = math.ceil(count / 100)
    print(f"watcher: list requests per look {per_look}, events fired {events} (3 batches ended midway)")
    print(f"one trigger per batch: {baseline} requests per poll")
    assert len(history) == 200
    figures = [
        {
            "figure": f"requests per poll interval, {count} batches in flight",
            "ours": steady,
            "baseline": baseline,
            "unit": "requests",
            "ratio": round(steady / baseline, 4) if baseline else None,
            "target": f"<= ceil({count}/100) = {goal}",
        },
        {
            "figure": "requests per minute at 60 s polls",
            "ours": steady,
            "baseline": baseline,
            "unit": "requests/min",
            "ratio": round(steady / baseline, 4) if baseline else None,
            "target": f"<= {goal}",
        },
    ]
    if EVENTS_FIGURES.exists():
        measured = json.loads(EVENTS_FIGURES.read_text())
        latencies = measured.get("webhook_to_run_start_seconds") or []
        if latencies:
            print(f"webhook -> consumer run start, from make test-events at {measured.get('at')}: {latencies}")
            figures.append(
                {
                    "figure": "webhook to consumer run start (make test-events)",
                    "ours": max(latencies),
                    "baseline": measured.get("poll_interval"),
                    "unit": "s",
                    "ratio": None,
                    "target": "within seconds",
                }
            )
    else:
        print(f"webhook latency: not measured yet (make test-events writes {EVENTS_FIGURES})")
    print("BENCH_JSON " + json.dumps({"name": "fleet_watch", "figures": figures}))


if __name__ == "__main__":
    main()
