"""Scenario (c): a Celery worker is SIGKILLed in the middle of submitting a batch.

Two runs of ``scaleout_kill`` on fake ``b``, one after the other:

* **upload**: uploads to the fake take 20 s (latency injected on ``POST /v1/files``); the worker
  running the task is killed once the task has looked for an earlier batch (``GET /v1/batches``)
  and started its upload. The retry runs on the other worker and uploads once more: one batch.
* **create**: the create is done by the server but its connection is dropped (the response is
  lost), and the lookup that follows takes 15 s (latency on ``GET /v1/batches``); the worker is
  killed during that lookup. The retry runs on the other worker, finds the batch by its
  idempotency key and re-attaches: still one batch, one upload.

The scheduler notices a killed task when its heartbeat is 20 s old (see ``FAST_FAILOVER``). After
each kill a replacement worker is started, so two workers serve the next case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.deployment.harness import log, require, task_log, xcom
from tests.scaleout.cluster import Cluster
from tests.scaleout.fleet import Report, cluster_wait

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
    requests: int = 0
    recovered_after: float = 0.0


def requests_since(cluster: Cluster, start: int) -> list[dict[str, Any]]:
    return cluster.fake("b", "GET", "requests")[start:]


def run_kill_case(cluster: Cluster, case: KillCase) -> None:
    start = len(cluster.fake("b", "GET", "requests"))
    files_before = {f["id"] for f in cluster.fake("b", "GET", "files")}
    if case.name == "upload":
        cluster.fake("b", "POST", "faults", {"latency": 20, "methods": "POST", "path_prefix": "/v1/files"})
    else:
        cluster.fake(
            "b", "POST", "drop_next", {"n": 1, "when": "after", "method": "POST", "path_prefix": "/v1/batches"}
        )
        cluster.fake("b", "POST", "faults", {"latency": 15, "methods": "GET", "path_prefix": "/v1/batches"})
    case.run_id = cluster.trigger(DAG, {"case": case.name})

    def in_window() -> str | None:
        cluster.stack.check_alive()
        seen = requests_since(cluster, start)
        if case.name == "upload":
            # The lookup before the upload answered: the upload (20 s on the server) is under way.
            started = any(r["method"] == "GET" and r["route"] == "/v1/batches" for r in seen)
        else:
            started = any(r["method"] == "POST" and r["route"] == "/v1/batches" and r["fault"] == "drop_after"
                          for r in seen)  # fmt: skip
        if not started:
            return None
        ti = next(t for t in cluster.task_instances(DAG, case.run_id) if t["task_id"] == "batch")
        return ti["hostname"] if ti["state"] == "running" and ti["hostname"] else None

    host = cluster_wait(in_window, 180, f"the {case.name} window of {DAG}")
    if case.name == "upload":
        time.sleep(2.0)  # well inside the 20 s upload
    killed_at = time.monotonic()
    case.killed = host
    log(f"({case.name}) SIGKILL {host} while it runs {DAG}.batch")
    cluster.stack.kill(cluster.component(host))
    cluster.fake("b", "DELETE", "faults")
    cluster.wait_for_runs([(DAG, case.run_id)], KILL_TIMEOUT)
    case.recovered_after = time.monotonic() - killed_at
    cluster.start("worker", int(host.rsplit("-", 1)[1]))
    case.tries = cluster.tries(DAG, case.run_id, "batch")
    seen = requests_since(cluster, start)
    case.requests = len(seen)
    case.batches = batches_of(cluster, case)
    case.uploads = len([f for f in cluster.fake("b", "GET", "files") if f["purpose"] == "batch"
                        and f["id"] not in files_before])  # fmt: skip


def batches_of(cluster: Cluster, case: KillCase) -> list[dict[str, Any]]:
    """Batches on the server made for this run's task: those carrying its batch's idempotency key."""
    assert cluster.api is not None
    final = xcom(cluster.api, DAG, case.run_id, "batch", "batch_id")
    batches = cluster.fake("b", "GET", "batches")
    key = next(b for b in batches if b["id"] == final)["metadata"]["airflow_idempotency_key"]
    return [b for b in batches if b["metadata"].get("airflow_idempotency_key") == key]


def run_kills(cluster: Cluster, report: Report) -> list[KillCase]:
    # Short batches from here on: the fleet is done.
    cluster.fake("b", "POST", "config", {"in_progress_seconds": 8})
    cases = []
    for name in ("upload", "create"):
        case = KillCase(name)
        run_kill_case(cluster, case)
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
    last = max(t["try_number"] for t in case.tries)
    text = task_log(cluster.api, DAG, case.run_id, "batch", last)
    ok = report.expect(len(case.tries) >= 2, f"({case.name}) expected a retry after the kill, tries: {states}")
    ok &= report.expect(hosts[0] == case.killed, f"({case.name}) first try ran on {hosts[0]}, killed {case.killed}")
    ok &= report.expect(hosts[-1] != case.killed, f"({case.name}) the retry ran on the killed worker {hosts[-1]}")
    ok &= report.expect(len(case.batches) == 1, f"({case.name}) {len(case.batches)} batches for one task")
    if case.name == "upload":
        ok &= report.expect(1 <= case.uploads <= 2, f"(upload) {case.uploads} uploads (expected the retry's one)")
        ok &= report.expect("Re-attaching" not in text, "(upload) the retry re-attached although no batch existed")
    else:
        ok &= report.expect(case.uploads == 1, f"(create) {case.uploads} uploads, expected 1")
        ok &= report.expect("Re-attaching to batch" in text, "(create) the retry's log has no 'Re-attaching to batch'")
    require(case.tries, "no tries")
    if ok:
        how = "uploaded again" if case.name == "upload" else "re-attached to the batch the lost create had made"
        report.passed.append(
            f"(c) SIGKILL {case.killed} during the {case.name}: try {len(case.tries)} ran on {hosts[-1]} and {how}; "
            f"1 batch, {case.uploads} upload(s), {case.requests} API requests; run done {case.recovered_after:.0f}s "
            "after the kill"
        )
