"""A throwaway Airflow deployment on this machine, as every real-deployment runner starts it.

``run_deployment.py``, ``run_events.py`` and ``run_ui.py`` (LocalExecutor on SQLite) and
``tests/scaleout/cluster.py`` (CeleryExecutor on Postgres) keep only what their scenario needs:
which DAGs, which fakes, which extra settings. This class holds the rest: the AIRFLOW_HOME layout
and the settings every run needs, bundled fake OpenAI servers as child processes, ``airflow db
migrate``, starting (and restarting) Airflow components, the REST API login, parsing, triggering.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from cryptography.fernet import Fernet

from tests.deployment.harness import (
    MARKER,
    Api,
    Component,
    Report,
    Stack,
    free_port,
    log,
    require,
    wait_for,
)

BIN = Path(sys.executable).parent
ROLE_ARGS = {
    "api-server": ["api-server"],
    # The scheduler and the triggerer would serve logs on all interfaces; everything runs on this
    # machine, so the api-server reads the log files under AIRFLOW_HOME and no log server is started.
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
AIRFLOW_ROLES = ("api-server", "scheduler", "dag-processor", "triggerer")
BLOCKED_WARNING = "Triggerer's async thread was blocked"
"""What Airflow's triggerer logs when a trigger held its event loop too long."""


@dataclass
class AirflowDeployment:
    home: Path
    stack: Stack
    report: Report = field(default_factory=Report)
    env: dict[str, str] = field(default_factory=dict)
    fakes: dict[str, str] = field(default_factory=dict)
    """Fake name -> its base URL (``http://127.0.0.1:PORT/v1``)."""
    fernet_key: str = ""
    password: str = ""
    """The ``admin`` user's password (Airflow's simple auth manager)."""
    api_port: int = 0
    api: Api | None = None
    runs: dict[str, str] = field(default_factory=dict)
    """DAG id -> the run of it triggered last."""
    generation: dict[str, int] = field(default_factory=dict)

    startup_timeout: ClassVar[float] = 180.0

    @property
    def logs(self) -> Path:
        """Where each component's (and each fake's) output goes: ``<name>.log``."""
        return self.home / "component-logs"

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    def expect(self, condition: Any, message: str) -> bool:
        return self.report.expect(condition, message)

    def confirm(self, condition: Any, message: str) -> bool:
        return self.report.confirm(condition, message)

    @contextlib.contextmanager
    def read_db(self, timeout: float = 2.0) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the SQLite metadata DB (the LocalExecutor deployments)."""
        db = sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=timeout)
        try:
            yield db
        finally:
            db.close()

    # Set-up

    def copy_dags(self, *sources: Path) -> None:
        """Copy DAG files (or folders, such as an example's data) into the DAGs folder."""
        self.dags.mkdir(parents=True, exist_ok=True)
        for source in sources:
            target = self.dags / source.name
            shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)

    def configure(self, *, executor: str, parallelism: int, database: str = "", **settings: str) -> None:
        """The settings every deployment needs (loopback api-server, simple auth with ``admin``, a fresh
        Fernet key, secrets), then ``settings`` on top. ``database``: SQLite under AIRFLOW_HOME if empty."""
        self.password = secrets.token_urlsafe(16)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}) + "\n")
        self.fernet_key = Fernet.generate_key().decode()
        self.api_port = free_port()
        base_url = f"http://127.0.0.1:{self.api_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENAI_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": executor,
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database or f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "PYTHONUNBUFFERED": "1",
                **settings,
            }
        )
        self.env = env

    # Fake OpenAI servers (child processes)

    def start_fakes(self, api_key: str, timings: dict[str, dict[str, float]]) -> None:
        """One bundled fake per name, accepting only ``api_key``; ``timings``: name -> its lifecycle
        options (``validating-seconds``...). Returns once each has printed its URL."""
        for seed, (name, options) in enumerate(timings.items()):
            data_dir = self.home / f"fake-{name}"
            data_dir.mkdir()
            argv = [sys.executable, "-m", "airflow_provider_openai_batch.testing", "--port", str(free_port())]
            argv += ["--api-key", api_key, "--seed", str(seed), "--data-dir", str(data_dir)]
            for option, value in options.items():
                argv += [f"--{option}", str(value)]
            self.stack.start(f"fake-{name}", argv, self.env, self.logs / f"fake-{name}.log")
        for name in timings:
            out = self.logs / f"fake-{name}.log"
            self.fakes[name] = wait_for(lambda out=out: self.alive() and first_line(out), 30, f"fake {name}'s URL")
            log(f"fake OpenAI {name} at {self.fakes[name]}")

    def connect_fake(self, name: str, conn_id: str, api_key: str, extra: dict[str, Any] | None = None) -> None:
        """Point the Airflow connection ``conn_id`` (an ``AIRFLOW_CONN_*`` variable) at fake ``name``."""
        conn: dict[str, Any] = {"conn_type": "openai_batch", "password": api_key, "host": self.fakes[name]}
        if extra:
            conn["extra"] = extra
        self.env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)

    def fake(self, name: str, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        return fake_control(self.fakes[name], method, route, body)

    def alive(self) -> bool:
        """For wait probes: fail at once when a component died."""
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

    def role_args(self, role: str, host: str, name: str) -> list[str]:
        """The ``airflow`` arguments of a role; a deployment with more roles (Celery workers) adds them."""
        return ROLE_ARGS[role]

    def component_env(self, host: str) -> dict[str, str]:
        return self.env

    def start(self, role: str, number: int = 0) -> Component:
        """Start one component; ``number`` names one of several (``worker-2``). Starting a role again
        (after a kill) names the new one ``<host>.restart<n>``, its log beside the first one's."""
        host = f"{role}-{number}" if number else role
        self.generation[host] = self.generation.get(host, 0) + 1
        name = host if self.generation[host] == 1 else f"{host}.restart{self.generation[host] - 1}"
        argv = [str(BIN / "airflow"), *self.role_args(role, host, name)]
        return self.stack.start(name, argv, self.component_env(host), self.logs / f"{name}.log")

    def start_airflow(self) -> None:
        for role in AIRFLOW_ROLES:
            self.start(role)

    def component(self, name: str) -> Component:
        """The latest component started under this name (a restart included)."""
        return next(c for c in reversed(self.stack.components) if c.name == name or c.name.startswith(name + "."))

    def connect_api(self) -> Api:
        api = Api(f"http://127.0.0.1:{self.api_port}")

        def healthy() -> bool:
            self.stack.check_alive()
            try:
                return api.http.get("/api/v2/monitor/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, self.startup_timeout, "the api-server's health endpoint")
        api.login("admin", self.password)
        self.api = api
        return api

    def wait_for_dags(self, dag_ids: list[str], *, unpause: bool = True) -> None:
        """Until every DAG is parsed (an import error fails at once), then unpause them (unless told not to)."""
        api = self.api
        assert api is not None

        def parsed() -> bool:
            self.stack.check_alive()
            errors = api.get("/importErrors")["import_errors"]
            require(not errors, f"DAG import errors: {json.dumps(errors)[:2000]}")
            return all(api.request("GET", f"/dags/{dag_id}").status_code == 200 for dag_id in dag_ids)

        wait_for(parsed, self.startup_timeout, "the DAGs to be parsed")
        for dag_id in dag_ids if unpause else ():
            self.unpause(dag_id)

    def unpause(self, dag_id: str) -> None:
        assert self.api is not None
        response = self.api.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        require(response.status_code == 200, f"unpause {dag_id} -> {response.status_code} {response.text[:300]}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        assert self.api is not None
        response = self.api.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        require(response.status_code == 200, f"trigger {dag_id} -> {response.status_code} {response.text[:300]}")
        run_id = response.json()["dag_run_id"]
        log(f"triggered {dag_id}: {run_id}")
        self.runs[dag_id] = run_id
        return run_id


def first_line(path: Path) -> str | None:
    """The URL a bundled fake server prints first, once it is written."""
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text(errors="replace")
        if "\n" in text:
            line = text.split("\n", 1)[0].strip()
            return line if line.startswith("http") else None
    return None


def fake_control(url: str, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
    """Call a bundled fake server's ``/_fake/<route>`` control route (no auth, never faulted)."""
    response = httpx.request(method, f"{url.removesuffix('/v1')}/_fake/{route}", json=body, timeout=30)
    require(response.status_code == 200, f"{method} /_fake/{route} -> {response.status_code} {response.text}")
    return response.json()
