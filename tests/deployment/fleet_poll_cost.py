"""The fleet part of ``make test-deployment``: 200 batches waiting in one real triggerer.

A third fake server (connection ``openai_fleet``) holds 200 batches that stay ``in_progress``;
the DAG ``openai_batch_fleet`` (``dags/deploy_fleet.py``) starts one ``OpenAIBatchTrigger``
per batch straight in the triggerer, after the other runs (its start-up is Airflow's own
load on the triggerer, see the DAG's docstring). Once every trigger row is claimed and the
first polls are behind (triggers wait one interval, less up to 20 % jitter, before their
first poll), the fake's request log is read at the start of each of ``INTERVALS`` poll
intervals: the reads of batches (list pages and single GETs) in each interval must stay
within ``ceil(200 / 100) + 5``, and the triggerer must not report its loop blocked meanwhile.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.deployment.airflow_deployment import BLOCKED_WARNING
from tests.deployment.harness import Api, wait_for

if TYPE_CHECKING:
    from tests.deployment.run_deployment import Deployment

DAG_ID = "openai_batch_fleet"
CONN_ENV = "AIRFLOW_CONN_OPENAI_FLEET"
BATCHES = 200
POLL_INTERVAL = 6.0
INTERVALS = 3
LIMIT = math.ceil(BATCHES / 100) + 5
READS = ("/v1/batches", "/v1/batches/{batch_id}")
INPUT_LINE = (
    '{"custom_id":"r-1","method":"POST","url":"/v1/chat/completions",'
    '"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}}\n'
)


def create_batches(url: str, api_key: str, ids_file: Path) -> list[str]:
    """The fleet's batches, made before Airflow starts; their ids go to the file the DAG reads."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url + "/", headers=headers, timeout=60) as client:
        files = {"file": ("fleet.jsonl", INPUT_LINE.encode(), "application/jsonl")}
        uploaded = client.post("files", data={"purpose": "batch"}, files=files)
        uploaded.raise_for_status()
        body = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        ids = []
        for _ in range(BATCHES):
            response = client.post("batches", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
    ids_file.write_text(json.dumps(ids))
    return ids


def polled_triggers(home: Path) -> int:
    """Fleet tasks whose trigger log has a progress line: their trigger runs and has polled."""
    folder = home / "logs" / f"dag_id={DAG_ID}"
    polled = 0
    for task in folder.glob("run_id=*/task_id=*"):
        polled += any(b"Batch batch_" in log.read_bytes() for log in task.glob("*trigger*"))
    return polled


def batch_reads(root: str) -> int:
    log = httpx.get(f"{root}/_fake/requests", timeout=30).json()
    return sum(1 for entry in log if entry["method"] == "GET" and entry["route"] in READS)


def requests_per_interval(root: str, interval: float = POLL_INTERVAL, intervals: int = INTERVALS) -> list[int]:
    marks = []
    start = time.monotonic()
    for k in range(intervals + 1):
        time.sleep(max(0.0, start + k * interval - time.monotonic()))
        marks.append(batch_reads(root))
    return [b - a for a, b in itertools.pairwise(marks)]


def summary(counts: list[int], stats: dict[str, Any], startup_blocks: int) -> str:
    pages = stats["requests"].get("GET /v1/batches", 0)
    gets = stats["requests"].get("GET /v1/batches/{batch_id}", 0)
    return (
        f"{BATCHES} batches waiting in one triggerer: API requests per {POLL_INTERVAL:g} s poll interval {counts} "
        f"(limit {LIMIT}); the fleet's fake saw {pages} list pages and {gets} single GETs in all; no blocked-loop "
        f"warning while they polled ({startup_blocks} while Airflow started the 200 start-from-trigger tasks)"
    )


def check_fleet(dep: Deployment, api: Api) -> None:
    """200 batches waiting in the one triggerer: requests per poll interval from the fleet fake's log.

    After the other checks: the 200 tasks start in the triggerer only now, so the blocked-loop
    warnings of Airflow's start-from-trigger start-up stay out of check_triggerer's verdict.
    """
    triggerer_log = dep.logs / "triggerer.log"
    before_fleet = triggerer_log.stat().st_size
    dep.unpause(DAG_ID)
    dep.trigger(DAG_ID)
    dep.runs.pop(DAG_ID)  # its batches never finish, and its XComs are none

    def all_polled() -> bool:
        dep.stack.check_alive()
        return polled_triggers(dep.home) >= BATCHES

    wait_for(all_polled, 150, f"{BATCHES} fleet triggers running and polled once", interval=1.0)
    polling_from = triggerer_log.stat().st_size
    root = dep.fakes["fleet"].removesuffix("/v1")
    counts = requests_per_interval(root)
    stats = dep.fake("fleet", "GET", "stats")
    raw = triggerer_log.read_bytes()
    startup = raw[before_fleet:polling_from].decode(errors="replace").count(BLOCKED_WARNING)
    polling = raw[polling_from:].decode(errors="replace")
    blocked = [line for line in polling.splitlines() if BLOCKED_WARNING in line]
    ok = dep.expect(0 < max(counts) <= LIMIT, f"fleet: requests per interval {counts}, limit {LIMIT}")
    ok &= dep.expect(stats["auth_failures"] == 0, "the fleet's fake saw a wrong API key")
    ok &= dep.expect(not blocked, f"the triggerer's loop was blocked while the fleet polled: {blocked[:3]}")
    if ok:
        dep.report.passed.append(summary(counts, stats, startup))
