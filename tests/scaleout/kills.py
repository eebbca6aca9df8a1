"""Scenario (c): a Celery worker is SIGKILLed in the middle of submitting a batch.

Two runs of ``scaleout_kill`` on fake ``b``, one after the other, while the fleet's batches run (all
of them already created, so the injected faults reach only these runs):

* **upload**: uploads to the fake take 30 s (latency injected on ``POST /v1/files``); the worker
  running the task is killed 3 s after the task logged that its input is valid (it then looks for
  an earlier batch, a quick list call, and uploads). The retry runs on the other worker and uploads
  once more: one batch, one create.
* **create**: the create is done by the server but its connection is dropped (the response is
  lost), and the lookup that follows takes 15 s (latency on ``GET /v1/batches``); the worker is
  killed during that lookup. The retry runs on the other worker, finds the batch by its
  idempotency key and re-attaches: still one batch, one upload.

The scheduler notices a killed task when its heartbeat is 20 s old (see ``FAST_FAILOVER``). After
each kill a replacement worker is started, so two workers serve the next case.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.deployment.harness import Report, log, require, task_log, wait_for, xcom
from tests.scaleout.cluster import KILL_INPUT, Cluster

DAG = "scaleout_kill"
KILL_TIMEOUT = 240.0


@dataclass
class KillCase:
    name: str
    run_id: str = ""
    killed: str = ""
    tries: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    uploads: int = 0
    upload_requests: int = 0
    create_requests: int = 0
    recovered_after: float = 0.0


def requests_since(cluster: Cluster, start: int) -> list[dict[str, Any]]:
    return cluster.fake("b", "GET", "requests")[start:]


def run_kill_case(cluster: Cluster, case: KillCase, tick: Callable[[], Any]) -> None:
    start = len(cluster.fake("b", "GET", "requests"))
    files_before = {f["id"] for f in cluster.fake("b", "GET", "files")}
    if case.name == "upload":
        cluster.fake("b", "POST", "faults", {"latency": 30, "methods": "POST", "path_prefix": "/v1/files"})
    else:
        cluster.fake(
            "b", "POST", "drop_next", {"n": 1, "when": "after", "method": "POST", "path_prefix": "/v1/batches"}
        )
        cluster.fake("b", "POST", "faults", {"latency": 15, "methods": "GET", "path_prefix": "/v1/batches"})
    case.run_id = cluster.trigger(DAG, {"case": case.name})

    def in_window() -> str | None:
        cluster.stack.check_alive()
        tick()
        ti = next(t for t in cluster.task_instances(DAG, case.run_id) if t["task_id"] == "batch")
        if ti["state"] != "running" or not ti["hostname"]:
            return None
        if case.name == "upload":
            assert cluster.api is not None
            started = "Validated " in task_log(cluster.api, DAG, case.run_id, "batch", ti["try_number"])
        else:
            # The create reached the server, which made the batch and then dropped the connection.
            seen = requests_since(cluster, start)
            started = any(r["method"] == "POST" and r["route"] == "/v1/batches" and r["fault"] == "drop_after"
                          for r in seen)  # fmt: skip
        return ti["hostname"] if started else None

    host = wait_for(in_window, 180, f"the {case.name} window of {DAG}", interval=1.0)
    if case.name == "upload":
        time.sleep(3.0)  # past the quick lookup, well inside the 30 s upload
    killed_at = time.monotonic()
    case.killed = host
    log(f"({case.name}) SIGKILL {host} while it runs {DAG}.batch")
    cluster.stack.kill(cluster.component(host))
    cluster.fake("b", "DELETE", "faults")
    cluster.wait_for_runs([(DAG, case.run_id)], KILL_TIMEOUT, on_tick=tick)
    case.recovered_after = time.monotonic() - killed_at
    cluster.start("worker", int(host.rsplit("-", 1)[1]))
    case.tries = cluster.tries(DAG, case.run_id, "batch")
    seen = requests_since(cluster, start)
    case.upload_requests = sum(1 for r in seen if r["method"] == "POST" and r["route"] == "/v1/files")
    case.create_requests = sum(1 for r in seen if r["method"] == "POST" and r["route"] == "/v1/batches")
    case.batches = batches_of(cluster, case)
    case.uploads = len([f for f in cluster.fake("b", "GET", "files") if f["filename"] == KILL_INPUT
                        and f["id"] not in files_before])  # fmt: skip


def batches_of(cluster: Cluster, case: KillCase) -> list[dict[str, Any]]:
    """Batches on the server made for this run's task: those carrying its batch's idempotency key."""
    assert cluster.api is not None
    final = xcom(cluster.api, DAG, case.run_id, "batch", "batch_id")
    batches = cluster.fake("b", "GET", "batches")
    key = next(b for b in batches if b["id"] == final)["metadata"]["airflow_idempotency_key"]
    return [b for b in batches if b["metadata"].get("airflow_idempotency_key") == key]


def run_kills(cluster: Cluster, report: Report, tick: Callable[[], Any]) -> list[KillCase]:
    # Short batches for these runs (the fleet's, made earlier, keep their timings).
    cluster.fake("b", "POST", "config", {"in_progress_seconds": 8})
    cases = []
    for name in ("upload", "create"):
        case = KillCase(name)
        run_kill_case(cluster, case, tick)
        check_kill_case(cluster, case, report)
        cases.append(case)
    created = sum(len(case.batches) for case in cases)
    uploads = sum(case.uploads for case in cases)
    report.figures["worker-kill batches created vs expected"] = f"{created} / {len(cases)}"
    report.figures["worker-kill uploads vs expected"] = f"{uploads} / {len(cases) + 1} (the upload cut by the kill + 1)"
    return cases


def check_kill_case(cluster: Cluster, case: KillCase, report: Report) -> None:
    assert cluster.api is not None
    hosts = [t.get("hostname") for t in sorted(case.tries, key=lambda t: t["try_number"])]
    states = [t.get("state") for t in sorted(case.tries, key=lambda t: t["try_number"])]
    ok = report.expect(len(case.tries) >= 2, f"({case.name}) expected a retry after the kill, tries: {states}")
    ok &= report.expect(hosts[0] == case.killed, f"({case.name}) first try ran on {hosts[0]}, killed {case.killed}")
    ok &= report.expect(hosts[-1] != case.killed, f"({case.name}) the retry ran on the killed worker {hosts[-1]}")
    ok &= report.expect(len(case.batches) == 1, f"({case.name}) {len(case.batches)} batches for one task")
    # One create request in both cases: after the upload kill only the retry creates; after the lost
    # create the retry finds the batch by its key and creates nothing.
    ok &= report.expect(case.create_requests == 1, f"({case.name}) {case.create_requests} create requests, expected 1")
    if case.name == "upload":
        ok &= report.expect(case.upload_requests == 2, f"(upload) {case.upload_requests} upload requests, expected 2")
        ok &= report.expect(1 <= case.uploads <= 2, f"(upload) {case.uploads} stored uploads, expected 1 or 2")
    else:
        ok &= report.expect(case.uploads == 1, f"(create) {case.uploads} uploads, expected 1")
    require(case.tries, "no tries")
    if ok:
        how = "uploaded again" if case.name == "upload" else "re-attached to the batch the lost create had made"
        report.passed.append(
            f"(c) SIGKILL {case.killed} during the {case.name}: try {len(case.tries)} ran on {hosts[-1]} and {how}; "
            f"1 batch; {case.upload_requests} upload and {case.create_requests} create request(s), {case.uploads} "
            f"file(s) stored; run done {case.recovered_after:.0f}s after the kill"
        )
