"""Scenarios (a), (b) and (d): a fleet of batches on two workers and two triggerers; a triggerer and
the scheduler die on the way.

(a) one ``scaleout_backfill`` run (20 shards, one batch each, spread over both workers) and five
    eval runs at once on the two connections: every run succeeds with exactly one upload and one
    batch per shard and per run.
(b) once 20+ triggers wait, the triggerer holding most of them is SIGKILLed: the other claims every
    orphaned trigger (its job heartbeat goes stale after ``triggerer_health_check_threshold``), each
    with the ``end_time`` it had before.
(d) then the scheduler is SIGKILLed and started again while the fleet is in flight: nothing is lost
    (every run succeeds) and nothing is duplicated (the same one batch per task).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.deployment.harness import Report, log, wait_for, xcom
from tests.scaleout.cluster import KILL_INPUT, Cluster
from tests.scaleout.observe import Observer, trigger_log_jobs

BACKFILL = "scaleout_backfill"
EVAL_RUNS = (("scaleout_eval_a", "a"), ("scaleout_eval_a", "a"), ("scaleout_eval_a", "a"),
             ("scaleout_eval_b", "b"), ("scaleout_eval_b", "b"))  # fmt: skip
SHARDS = 20
WAITING_BEFORE_KILL = 20
FLEET_TIMEOUT = 420.0


@dataclass
class FleetOutcome:
    runs: list[tuple[str, str, str]] = field(default_factory=list)
    """(dag_id, run_id, fake name)."""
    before: dict[int, int | None] = field(default_factory=dict)
    victim_job: int = 0
    survivor_job: int = 0
    victim_name: str = ""
    adopted_after: float = 0.0
    states_at_restart: dict[str, int] = field(default_factory=dict)
    batch_ids: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(dag_id, run_id) -> the batches the run reported (its check task's XCom)."""


def start_fleet(cluster: Cluster, observer: Observer) -> FleetOutcome:
    """Trigger the runs; once 20+ triggers wait, kill a triggerer, then restart the scheduler."""
    out = FleetOutcome()
    out.runs.append((BACKFILL, cluster.trigger(BACKFILL), "a"))
    for dag_id, fake in EVAL_RUNS:
        out.runs.append((dag_id, cluster.trigger(dag_id), fake))

    progress = {"last": -1, "checked": 0.0}

    def many_waiting() -> bool:
        cluster.stack.check_alive()
        now = observer.sample()
        assigned = {tid: job for tid, job in now.items() if job is not None}
        if len(assigned) != progress["last"]:
            log(f"{len(assigned)} triggers waiting in the triggerers")
            progress["last"] = len(assigned)
        if time.monotonic() - progress["checked"] > 5:
            progress["checked"] = time.monotonic()
            cluster.require_no_failed_run([(d, r) for d, r, _ in out.runs])
        return len(assigned) >= WAITING_BEFORE_KILL and assigned

    assigned = wait_for(many_waiting, 300, f"{WAITING_BEFORE_KILL} triggers waiting in the triggerers", interval=1.0)
    out.before = dict(assigned)
    jobs = observer.triggerer_jobs()
    counts: dict[int, int] = {}
    for job in assigned.values():
        counts[job] = counts.get(job, 0) + 1
    out.victim_job = max(counts, key=lambda job: counts[job])
    out.victim_name = jobs[out.victim_job]
    survivors = [job for job, host in jobs.items() if host != out.victim_name]
    log(
        f"{len(assigned)} triggers waiting: "
        + ", ".join(f"{jobs[job]} (job {job}) holds {n}" for job, n in sorted(counts.items()))
        + f"; SIGKILL {out.victim_name}"
    )
    killed_at = time.monotonic()
    cluster.stack.kill(cluster.component(out.victim_name))
    orphans = {tid for tid, job in out.before.items() if job == out.victim_job}

    def adopted() -> bool:
        cluster.stack.check_alive()
        now = observer.sample()
        left = [tid for tid in orphans if tid in now and now[tid] not in survivors]
        return not left

    wait_for(adopted, 120, "the surviving triggerer to claim the dead one's triggers", interval=1.0)
    out.adopted_after = time.monotonic() - killed_at
    holders_now = {observer.triggers[tid].holders[-1] for tid in orphans}
    out.survivor_job = next((job for job in survivors if job in holders_now), survivors[0])
    log(f"{len(orphans)} orphaned triggers claimed by {jobs[out.survivor_job]} {out.adopted_after:.1f}s after the kill")

    # (d) The scheduler dies while the fleet waits deferred and its later tasks are not scheduled yet.
    out.states_at_restart = count_states(cluster, out.runs)
    log(f"SIGKILL the scheduler; task states now: {out.states_at_restart}")
    cluster.stack.kill(cluster.component("scheduler"))
    time.sleep(2)
    cluster.start("scheduler")
    return out


def finish_fleet(cluster: Cluster, observer: Observer, out: FleetOutcome) -> None:
    cluster.wait_for_runs([(d, r) for d, r, _ in out.runs], FLEET_TIMEOUT, on_tick=observer.sample)


def wait_until_all_created(cluster: Cluster, observer: Observer, out: FleetOutcome) -> None:
    """Every fleet batch exists on the servers: from now on, faults injected for (c) reach only (c)."""
    expected = SHARDS + len(EVAL_RUNS)

    def created() -> bool:
        cluster.stack.check_alive()
        observer.sample()
        cluster.require_no_failed_run([(d, r) for d, r, _ in out.runs])
        return sum(cluster.fake(name, "GET", "stats")["batches_created"] for name in ("a", "b")) >= expected

    wait_for(created, 180, f"all {expected} fleet batches to be created", interval=1.0)


def count_states(cluster: Cluster, runs: list[tuple[str, str, str]]) -> dict[str, int]:
    states: dict[str, int] = {}
    for dag_id, run_id, _ in runs:
        for ti in cluster.task_instances(dag_id, run_id):
            state = ti["state"] or "no state yet"
            states[state] = states.get(state, 0) + 1
    return states


def check_fleet(cluster: Cluster, observer: Observer, out: FleetOutcome, report: Report) -> None:
    assert cluster.api is not None
    api = cluster.api
    failures_before = len(report.failed)
    # Every task of every run succeeded; what each run's check task landed.
    expected_batches: dict[str, set[str]] = {"a": set(), "b": set()}
    per_run: list[str] = []
    retried: list[str] = []
    for dag_id, run_id, fake in out.runs:
        tis = cluster.task_instances(dag_id, run_id)
        bad = [f"{ti['task_id']}[{ti['map_index']}]={ti['state']}" for ti in tis if ti["state"] != "success"]
        report.expect(not bad, f"{dag_id} {run_id}: tasks not successful: {bad}")
        retried += [f"{dag_id}.{ti['task_id']}[{ti['map_index']}]" for ti in tis if ti["try_number"] > 1]
        summary = xcom(api, dag_id, run_id, "check")
        batch_ids = summary["batch_ids"]
        shards = SHARDS if dag_id == BACKFILL else 1
        landed = summary["landed"]
        report.expect(
            len(set(batch_ids)) == shards, f"{dag_id}: {len(set(batch_ids))} distinct batches, expected {shards}"
        )
        report.expect(landed["other"] == 0 and landed["succeeded"] > 0, f"{dag_id}: landed {landed}")
        report.expect(
            summary["results"].startswith(cluster.storage.as_uri()), f"results not on shared storage: {summary}"
        )
        expected_batches[fake].update(batch_ids)
        out.batch_ids[(dag_id, run_id)] = set(batch_ids)
        per_run.append(f"{dag_id}: {len(batch_ids)} batch(es), landed {landed['succeeded']} lines")
    # The servers' side: one upload and one batch per shard and per run, nothing else.
    created = uploads = requests = every_batch = 0
    routes: dict[str, int] = {}
    for fake, expected in expected_batches.items():
        # The worker-kill runs (c) share fake b: their uploads, and the batches made from them, are theirs.
        every_file = [f for f in cluster.fake(fake, "GET", "files") if f["purpose"] == "batch"]
        theirs = {f["id"] for f in every_file if f["filename"] == KILL_INPUT}
        files = [f for f in every_file if f["id"] not in theirs]
        on_server = cluster.fake(fake, "GET", "batches")
        every_batch += len(on_server)
        batches = [b for b in on_server if b["input_file_id"] not in theirs]
        server_ids = {b["id"] for b in batches}
        inputs = [b["input_file_id"] for b in batches]
        keys = [b["metadata"].get("airflow_idempotency_key") for b in batches]
        report.expect(server_ids == expected, f"fake {fake}: batches {sorted(server_ids - expected)} not reported by "
                      f"a run; {sorted(expected - server_ids)} reported but not on the server")  # fmt: skip
        report.expect(len(set(keys)) == len(batches), f"fake {fake}: two batches share an idempotency key")
        report.expect(len(files) == len(expected), f"fake {fake}: {len(files)} uploads for {len(expected)} batches")
        report.expect(sorted(inputs) == sorted(f["id"] for f in files), f"fake {fake}: uploads and batch inputs differ")
        created += len(batches)
        uploads += len(files)
        stats = cluster.fake(fake, "GET", "stats")
        requests += stats["requests_total"]
        for route, count in stats["requests"].items():
            routes[route] = routes.get(route, 0) + count
    expected_total = SHARDS + len(EVAL_RUNS)
    ok = report.expect(created == expected_total, f"batches created {created}, expected {expected_total}")
    ok &= report.expect(uploads == expected_total, f"uploads {uploads}, expected {expected_total}")
    if ok and len(report.failed) == failures_before:
        report.passed.append(
            f"(a) {len(out.runs)} runs succeeded ({'; '.join(per_run[:2])}; ...): {created} batches and {uploads} "
            f"uploads for {expected_total} shards+runs, each batch reported by its run, inputs on shared storage; "
            f"tasks that needed a retry: {retried or 'none'}"
        )
        report.passed.append(
            f"(d) scheduler SIGKILLed and restarted with tasks {out.states_at_restart}: every run succeeded, one "
            "batch and one upload per task"
        )
    report.figures["fleet batches created vs expected"] = f"{created} / {expected_total}"
    report.figures["fleet uploads vs expected"] = f"{uploads} / {expected_total}"
    by_route = ", ".join(f"{route} {count}" for route, count in sorted(routes.items(), key=lambda item: -item[1]))
    report.figures["API requests per batch (fleet + worker-kill runs, 5 s polls)"] = (
        f"{requests / max(every_batch, 1):.1f} ({requests} for {every_batch} batches: {by_route})"
    )
    check_failover(cluster, observer, out, report)


def check_failover(cluster: Cluster, observer: Observer, out: FleetOutcome, report: Report) -> None:
    jobs = observer.triggerer_jobs()
    orphans = [observer.triggers[tid] for tid, job in out.before.items() if job == out.victim_job]
    moved = [t for t in orphans if t.holders[-1] == out.survivor_job]
    kept_deadline = [t for t in orphans if len(t.end_times) == 1 and None not in t.end_times]
    survivor_logged = [t for t in orphans if out.survivor_job in trigger_log_jobs(cluster.home, t.task)]
    ok = report.expect(len(orphans) > 0, "the killed triggerer held no trigger")
    ok &= report.expect(len(moved) == len(orphans), f"{len(orphans) - len(moved)} orphaned triggers never moved")
    changed = "; ".join(f"{t.task} {sorted(map(str, t.end_times))}" for t in orphans if t not in kept_deadline)
    unlogged = ", ".join(t.task for t in orphans if t not in survivor_logged)
    ok &= report.expect(not changed, f"an adopted trigger's end_time changed or was missing: {changed}")
    ok &= report.expect(not unlogged, f"adopted triggers without a trigger log of the survivor: {unlogged}")
    if ok:
        report.passed.append(
            f"(b) SIGKILL {out.victim_name} with {len(out.before)} triggers waiting: {jobs[out.survivor_job]} claimed "
            f"all {len(orphans)} of its triggers in {out.adopted_after:.1f}s, each with its original end_time, and "
            f"wrote their trigger logs; no duplicate batch (see (a))"
        )
    report.figures["triggerer failover"] = f"{len(orphans)} triggers moved in {out.adopted_after:.1f}s"
    labels = run_labels(out.runs)
    holders: dict[str, list[str]] = {}
    for tid in sorted(out.before):
        seen = observer.triggers[tid]
        path = " -> ".join(jobs.get(job, f"job {job}") for job in seen.holders)
        holders.setdefault(path, []).append(short_task(seen.task, labels))
    report.lines.append("triggers by triggerer (before -> after the kill):")
    for path, tasks in holders.items():
        report.lines.append(f"  {path}: {len(tasks)} trigger(s): {', '.join(sorted(tasks, key=natural))}")


def run_labels(runs: list[tuple[str, str, str]]) -> dict[str, str]:
    """``run_id -> eval_a#2``: short names for the detail lines."""
    labels: dict[str, str] = {}
    for dag_id, run_id, _ in runs:
        short = dag_id.removeprefix("scaleout_")
        labels[run_id] = f"{short}#{sum(1 for label in labels.values() if label.startswith(short + '#')) + 1}"
    return labels


def natural(label: str) -> tuple[str, int]:
    """``backfill#1.embed[2]`` before ``backfill#1.embed[10]``."""
    name, _, index = label.partition("[")
    return name, int(index.rstrip("]")) if index else -1


def short_task(task: str, labels: dict[str, str]) -> str:
    _, run_id, rest = task.split("/", 2)
    return f"{labels.get(run_id, run_id)}.{rest}"
