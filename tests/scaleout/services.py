"""PostgreSQL and Redis from Debian's packages, on loopback ports, with their own data in a temp folder.

The packages are installed where missing (one ``apt-get update``, then ``apt-get install -y``), so
the scale-out test runs on a fresh Debian machine. Postgres refuses to run as root: when this
script is root, ``initdb`` and ``postgres`` run as the ``postgres`` system user (made with
``useradd`` if the package did not make it) through ``runuser``, on a data folder that user owns.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from tests.deployment.harness import Stack, free_port, log, require, wait_for

PG_USER = "airflow"
PG_DB = "airflow"
PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "64MB",
    # A throwaway database: durability only costs time here.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def _apt_get(*args: str) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    command = [*prefix, "apt-get", *args]
    log("running " + " ".join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    require(result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout.decode(errors='replace')[-2000:]}")


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def ensure_packages() -> list[str]:
    """Install ``postgresql`` / ``redis-server`` if missing; return what was installed."""
    missing = []
    if postgres_bin() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        missing.append("redis-server")
    if missing:
        _apt_get("update")
        _apt_get("install", "-y", "--no-install-recommends", *missing)
    require(postgres_bin() is not None, "postgresql is installed but no /usr/lib/postgresql/*/bin/postgres")
    return missing


@dataclass
class Services:
    pg_port: int
    redis_port: int

    @property
    def sql_alchemy_conn(self) -> str:
        """No driver named: Airflow 3.3 uses psycopg 3 (sync), asyncpg (async) and, for Celery's results,
        ``db+postgresql+psycopg://`` derived from this URL."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.pg_port}/{PG_DB}"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def connect(self) -> psycopg.Connection:
        """A read-side connection for the checks (trigger rows, jobs)."""
        return psycopg.connect(
            host="127.0.0.1", port=self.pg_port, user=PG_USER, dbname=PG_DB, connect_timeout=5, autocommit=True
        )


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--", *argv]


def start_postgres(stack: Stack, logs: Path, data: Path) -> int:
    """initdb a fresh cluster in ``data`` (trust auth, loopback only), start it, create the Airflow database."""
    bin_dir = postgres_bin()
    assert bin_dir is not None
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        # The postgres user must reach its folder through the run's 0700 temp folder.
        data.parent.chmod(0o711)
        shutil.chown(data, "postgres")
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"]
    result = subprocess.run(_as_postgres_user(initdb), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    require(result.returncode == 0, f"initdb failed:\n{result.stdout.decode(errors='replace')[-2000:]}")
    port = free_port()
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
    for name, value in PG_SETTINGS.items():
        argv += ["-c", f"{name}={value}"]
    # SIGINT is Postgres's fast shutdown (SIGTERM would wait for every client to leave).
    stack.start(
        "postgres",
        _as_postgres_user(argv),
        dict(os.environ),
        logs / "postgres.log",
        cwd=str(data),
        stop_signal=signal.SIGINT,
    )

    def ready() -> bool:
        stack.check_alive()
        try:
            db = psycopg.connect(
                host="127.0.0.1", port=port, user=PG_USER, dbname="postgres", connect_timeout=2, autocommit=True
            )
        except psycopg.OperationalError:
            return False
        with db:
            db.execute(f"CREATE DATABASE {PG_DB}")
        return True

    wait_for(ready, 60, "postgres to accept connections")
    log(f"postgres on 127.0.0.1:{port} (data {data})")
    return port


def start_redis(stack: Stack, logs: Path, folder: Path) -> int:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(folder), "--daemonize", "no"]
    stack.start("redis", argv, dict(os.environ), logs / "redis.log", cwd=str(folder))
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2)

    def ready() -> bool:
        stack.check_alive()
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    wait_for(ready, 30, "redis to answer PING")
    client.close()
    log(f"redis on 127.0.0.1:{port}")
    return port
