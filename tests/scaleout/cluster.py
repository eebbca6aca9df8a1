"""The scale-out deployment: Airflow on CeleryExecutor + Postgres + Redis, two fake OpenAI servers.

Components (each its own process group, named by ``OPENAI_BATCH_SCALEOUT_HOST`` through
``tests/scaleout/hostname.py`` so that task tries and triggerer jobs say where they ran):
api-server, scheduler, dag-processor, ``worker-1`` and ``worker-2`` (``airflow celery worker``),
``triggerer-1`` and ``triggerer-2``, and the fakes ``fake-a`` / ``fake-b`` behind the connections
``openai_a`` / ``openai_b``. The heartbeat settings are shortened (see :data:`FAST_FAILOVER`) so
that a dead triggerer, worker or scheduler is noticed in seconds instead of minutes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tests.deployment.airflow_deployment import AirflowDeployment
from tests.deployment.harness import log, require, run_path
from tests.scaleout.services import Services

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SECRET = "scaleout-secret-key-do-not-leak-5e1f"
WORKER_CONCURRENCY = 4
KILL_INPUT = "kill_requests.jsonl"
"""The input file name of the worker-kill DAG: its uploads (and so its batches) on fake b are told apart by it."""
FAKE_TIMINGS = {"validating-seconds": 2, "in-progress-seconds": 180, "finalizing-seconds": 1}
"""Fleet batch lifetime: the 25 batches are created over 50 s on a quiet 2-core machine and over 2+ minutes
on a loaded one; 20+ must wait at once when a triggerer dies. The worker-kill runs (c) happen meanwhile."""

FAST_FAILOVER = {
    # A triggerer whose job heartbeat (every 2 s) is older than 10 s is dead: the other one claims
    # its triggers at its next loop (defaults 5 s and 30 s).
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    # Claim at most 4 unassigned triggers per loop, so that both triggerers get some (default 50).
    "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "4",
    # A running task whose supervisor stopped heartbeating for 20 s failed (default 300 s); checked every 3 s.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
    # A scheduler silent for 15 s is dead; its queued/running tasks are adopted (checked every 10 s).
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
}


@dataclass
class Cluster(AirflowDeployment):
    services: Services | None = None

    startup_timeout: ClassVar[float] = 240.0

    @property
    def storage(self) -> Path:
        return self.home / "shared-storage"

    def prepare(self, services: Services) -> None:
        self.services = services
        self.copy_dags(HERE / "dags" / "scaleout_dags.py")
        self.storage.mkdir()
        self.configure(
            executor="CeleryExecutor",
            parallelism=32,
            database=services.sql_alchemy_conn,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            AIRFLOW__CORE__HOSTNAME_CALLABLE="tests.scaleout.hostname.hostname",
            AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="32",
            # Stock Airflow ships False: without it every batch task would hold a worker slot while it waits.
            AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True",
            AIRFLOW__CELERY__BROKER_URL=services.broker_url,
            AIRFLOW__CELERY__WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
            AIRFLOW__CELERY__SYNC_PARALLELISM="1",
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
            AIRFLOW__WORKERS__MISSING_DAG_RETRIES="0",
            # A loaded 2-core machine can keep the one api-server busy past the default 5 s.
            AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT="30",
            **FAST_FAILOVER,
            OPENAI_BATCH_POLL_INTERVAL="5",
            OPENAI_BATCH_SCALEOUT_STORAGE=self.storage.as_uri(),
        )

    def setup_fakes(self) -> None:
        self.start_fakes(SECRET, {"a": FAKE_TIMINGS, "b": FAKE_TIMINGS})
        for name in ("a", "b"):
            self.connect_fake(name, f"openai_{name}", SECRET)

    def role_args(self, role: str, host: str, name: str) -> list[str]:
        if role != "worker":
            return super().role_args(role, host, name)
        return [
            "celery", "worker", "--celery-hostname", f"{host}@scaleout", "--concurrency", str(WORKER_CONCURRENCY),
            "--skip-serve-logs", "--pid", str(self.home / f"{name}.pid"), "--without-mingle", "--without-gossip",
        ]  # fmt: skip

    def component_env(self, host: str) -> dict[str, str]:
        """Each component names itself by this variable (``tests/scaleout/hostname.py``)."""
        return {**self.env, "OPENAI_BATCH_SCALEOUT_HOST": host}

    def start_airflow(self) -> None:
        for role in ("api-server", "scheduler", "dag-processor"):
            self.start(role)
        for number in (1, 2):
            self.start("worker", number)
            self.start("triggerer", number)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        assert self.api is not None
        return self.api.get(run_path(dag_id, run_id) + "/taskInstances", params={"limit": 100})["task_instances"]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        assert self.api is not None
        path = run_path(dag_id, run_id) + f"/taskInstances/{task_id}"
        path += f"/{map_index}/tries" if map_index >= 0 else "/tries"
        return self.api.get(path)["task_instances"]

    def require_no_failed_run(self, runs: list[tuple[str, str]]) -> None:
        assert self.api is not None
        for dag_id, run_id in runs:
            state = self.api.get(run_path(dag_id, run_id))["state"]
            require(state != "failed", f"{dag_id} run {run_id} failed")

    def wait_for_runs(self, runs: list[tuple[str, str]], timeout: float, on_tick: Any = None) -> None:
        """Until every run ends; fail at once on a failed run. ``on_tick()`` is called every second."""
        assert self.api is not None
        deadline = time.monotonic() + timeout
        pending = list(runs)
        last = ""
        while pending:
            self.stack.check_alive()
            if on_tick is not None:
                on_tick()
            states: dict[str, int] = {}
            for dag_id, run_id in list(pending):
                run = self.api.get(run_path(dag_id, run_id))
                require(run["state"] != "failed", f"{dag_id} run {run_id} failed")
                if run["state"] == "success":
                    pending.remove((dag_id, run_id))
                    continue
                for ti in self.task_instances(dag_id, run_id):
                    states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
            line = f"{len(runs) - len(pending)}/{len(runs)} runs done; open tasks " + ", ".join(
                f"{state} {count}" for state, count in sorted(states.items())
            )
            if line != last:
                log(line)
                last = line
            require(time.monotonic() < deadline, f"runs not finished after {timeout:.0f}s: {line}")
            time.sleep(1.0)
