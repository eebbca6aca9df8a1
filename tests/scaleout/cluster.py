"""The scale-out deployment: Airflow on CeleryExecutor + Postgres + Redis, two fake OpenAI servers.

Components (each its own process group, named by ``OPENAI_BATCH_SCALEOUT_HOST`` through
``tests/scaleout/hostname.py`` so that task tries and triggerer jobs say where they ran):
api-server, scheduler, dag-processor, ``worker-1`` and ``worker-2`` (``airflow celery worker``),
``triggerer-1`` and ``triggerer-2``, and the fakes ``fake-a`` / ``fake-b`` behind the connections
``openai_a`` / ``openai_b``. The heartbeat settings are shortened (see :data:`FAST_FAILOVER`) so
that a dead triggerer, worker or scheduler is noticed in seconds instead of minutes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.deployment.harness import (
    MARKER,
    Api,
    Component,
    Stack,
    fake_control,
    first_line,
    free_port,
    log,
    require,
    run_path,
    wait_for,
)
from tests.scaleout.services import Services

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SECRET = "scaleout-secret-key-do-not-leak-5e1f"
STARTUP_TIMEOUT = 240.0
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
class Cluster:
    home: Path
    stack: Stack
    services: Services | None = None
    env: dict[str, str] = field(default_factory=dict)
    fakes: dict[str, str] = field(default_factory=dict)
    fernet_key: str = ""
    password: str = ""
    api_port: int = 0
    api: Api | None = None
    generation: dict[str, int] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.home / "component-logs"

    @property
    def storage(self) -> Path:
        return self.home / "shared-storage"

    def prepare(self, services: Services) -> None:
        self.services = services
        dags = self.home / "dags"
        dags.mkdir(parents=True)
        shutil.copy(HERE / "dags" / "scaleout_dags.py", dags / "scaleout_dags.py")
        self.storage.mkdir()
        self.password = secrets.token_urlsafe(16)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}) + "\n")
        self.fernet_key = Fernet.generate_key().decode()
        self.api_port = free_port()
        base_url = f"http://127.0.0.1:{self.api_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENAI_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.scaleout.hostname.hostname",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "32",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                # Stock Airflow ships False: without it every batch task would hold a worker slot while it waits.
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": services.sql_alchemy_conn,
                "AIRFLOW__CELERY__BROKER_URL": services.broker_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__WORKERS__MISSING_DAG_RETRIES": "0",
                # A loaded 2-core machine can keep the one api-server busy past the default 5 s.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
                **FAST_FAILOVER,
                "OPENAI_BATCH_POLL_INTERVAL": "5",
                "OPENAI_BATCH_SCALEOUT_STORAGE": self.storage.as_uri(),
            }
        )
        self.env = env

    # Fakes

    def start_fakes(self) -> None:
        for seed, name in enumerate(("a", "b")):
            data_dir = self.home / f"fake-{name}"
            data_dir.mkdir()
            argv = [sys.executable, "-m", "airflow_provider_openai_batch.testing", "--port", str(free_port())]
            argv += ["--api-key", SECRET, "--seed", str(seed), "--data-dir", str(data_dir)]
            for option, value in FAKE_TIMINGS.items():
                argv += [f"--{option}", str(value)]
            self.stack.start(f"fake-{name}", argv, self.env, self.logs / f"fake-{name}.log")
        for name in ("a", "b"):
            out = self.logs / f"fake-{name}.log"
            self.fakes[name] = wait_for(lambda out=out: self.alive() and first_line(out), 30, f"fake {name}'s URL")
            conn = {"conn_type": "openai_batch", "password": SECRET, "host": self.fakes[name]}
            self.env[f"AIRFLOW_CONN_OPENAI_{name.upper()}"] = json.dumps(conn)
            log(f"fake OpenAI {name} at {self.fakes[name]} (connection openai_{name})")

    def fake(self, name: str, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        return fake_control(self.fakes[name], method, route, body)

    def alive(self) -> bool:
        self.stack.check_alive()
        return True

    # Airflow

    def migrate(self) -> None:
        out = self.logs / "db-migrate.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as handle:
            result = subprocess.run(
                [str(BIN / "airflow"), "db", "migrate"],
                env={**self.env, MARKER: self.stack.marker},
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                timeout=300,
                start_new_session=True,
            )
        require(result.returncode == 0, f"airflow db migrate failed ({result.returncode}); see {out}")

    def start(self, role: str, number: int = 0) -> Component:
        """Start one component; ``number`` names a worker or triggerer (``worker-2``)."""
        host = f"{role}-{number}" if number else role
        self.generation[host] = self.generation.get(host, 0) + 1
        name = host if self.generation[host] == 1 else f"{host}.restart{self.generation[host] - 1}"
        # No log servers: every component writes its task and trigger logs under the one AIRFLOW_HOME,
        # and the api-server reads them there.
        args = {
            "api-server": ["api-server"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
            "worker": [
                "celery", "worker", "--celery-hostname", f"{host}@scaleout", "--concurrency", str(WORKER_CONCURRENCY),
                "--skip-serve-logs", "--pid", str(self.home / f"{name}.pid"), "--without-mingle", "--without-gossip",
            ],
        }[role]  # fmt: skip
        env = {**self.env, "OPENAI_BATCH_SCALEOUT_HOST": host}
        return self.stack.start(name, [str(BIN / "airflow"), *args], env, self.logs / f"{name}.log")

    def start_airflow(self) -> None:
        for role, number in (("api-server", 0), ("scheduler", 0), ("dag-processor", 0)):
            self.start(role, number)
        for number in (1, 2):
            self.start("worker", number)
            self.start("triggerer", number)

    def component(self, name: str) -> Component:
        return next(c for c in reversed(self.stack.components) if c.name == name or c.name.startswith(name + "."))

    def connect_api(self) -> Api:
        api = Api(f"http://127.0.0.1:{self.api_port}")

        def healthy() -> bool:
            self.stack.check_alive()
            try:
                return api.http.get("/api/v2/monitor/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, STARTUP_TIMEOUT, "the api-server's health endpoint")
        api.login("admin", self.password)
        self.api = api
        return api

    def wait_for_dags(self, dag_ids: list[str]) -> None:
        api = self.api
        assert api is not None

        def parsed() -> bool:
            self.stack.check_alive()
            errors = api.get("/importErrors")["import_errors"]
            require(not errors, f"DAG import errors: {json.dumps(errors)[:2000]}")
            return all(api.request("GET", f"/dags/{dag_id}").status_code == 200 for dag_id in dag_ids)

        wait_for(parsed, STARTUP_TIMEOUT, "the DAGs to be parsed")
        for dag_id in dag_ids:
            response = api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            require(response.status_code == 200, f"unpause {dag_id} -> {response.status_code} {response.text[:300]}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        assert self.api is not None
        response = self.api.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        require(response.status_code == 200, f"trigger {dag_id} -> {response.status_code} {response.text[:300]}")
        run_id = response.json()["dag_run_id"]
        log(f"triggered {dag_id}: {run_id}")
        return run_id

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
