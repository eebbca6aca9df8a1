"""What the real-deployment scripts share: child processes that are always stopped, the REST API, waiting.

``run_deployment.py`` (``make test-deployment``) and ``tests/scaleout/run_scaleout.py``
(``make test-scaleout``) start real servers and Airflow components. Every child leads its own
process group and carries a marker in its environment, so that a stop (also after a failure, a
signal or the hard timeout) finds every process this run started and nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

MARKER = "OPENAI_BATCH_DEPLOY_MARKER"
STOP_GRACE = 20.0
LOG_PREFIX = ["deploy"]
"""The tag of :func:`log` lines; a script sets ``LOG_PREFIX[0]`` once."""


class CheckFailed(AssertionError):
    pass


class Interrupted(BaseException):
    """A signal or the hard timeout: unwind through ``finally`` and stop everything."""


def require(condition: Any, message: str) -> None:
    """A precondition of the next steps: fail now."""
    if not condition:
        raise CheckFailed(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(message: str) -> None:
    print(f"[{LOG_PREFIX[0]} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        require(time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def first_line(path: Path) -> str | None:
    """The URL a bundled fake server prints first, once it is written."""
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text(errors="replace")
        if "\n" in text:
            line = text.split("\n", 1)[0].strip()
            return line if line.startswith("http") else None
    return None


def last_lines(text: str, lines: int) -> str:
    return "\n".join(line[:400] for line in text.splitlines()[-lines:])


def tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return last_lines(path.read_text(errors="replace"), lines)
    return "(no output)"


# Processes


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    tag: str
    """The value of ``MARKER`` in this component's environment: ``<run marker>.<name>``."""
    stop_signal: int = signal.SIGTERM
    killed: bool = False
    """Killed on purpose by the test: no longer expected to be alive."""


@dataclass
class Stack:
    """Everything this run started: each child leads its own process group and carries a marker."""

    marker: str
    components: list[Component] = field(default_factory=list)
    stopped: bool = False

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        *,
        cwd: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Component:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{self.marker}.{name}"
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                argv,
                env={**env, MARKER: tag},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd or env.get("AIRFLOW_HOME"),
            )
        component = Component(name, process, log_path, tag, stop_signal)
        self.components.append(component)
        log(f"started {name} (pid {process.pid})")
        return component

    def running(self) -> list[Component]:
        return [c for c in self.components if c.process.poll() is None]

    def check_alive(self) -> None:
        for component in self.components:
            if component.killed:
                continue
            code = component.process.poll()
            require(code is None, f"{component.name} (pid {component.process.pid}) exited early with code {code}")

    def kill(self, component: Component) -> list[int]:
        """SIGKILL a component as a machine failure would: its group and every process carrying its tag."""
        component.killed = True
        _signal_group(component.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.process.wait(timeout=10)
        strays = marked_pids(component.tag, exact=True)
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return strays

    def stop(self) -> list[str]:
        """Signal every group, wait, SIGKILL what is left, then any stray process carrying our marker."""
        if self.stopped:
            return []
        self.stopped = True
        notes: list[str] = []
        for component in reversed(self.components):
            if component.process.poll() is None:
                _signal_group(component.process.pid, component.stop_signal)
        deadline = time.monotonic() + STOP_GRACE
        for component in reversed(self.components):
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for component in self.components:
            if component.process.poll() is None:
                notes.append(f"{component.name} ignored its stop signal for {STOP_GRACE:.0f}s: killed")
            _signal_group(component.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=5)
        time.sleep(0.2)
        strays = marked_pids(self.marker)
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if strays:
            notes.append(f"killed {len(strays)} stray process(es) outside the groups: {strays}")
        return notes


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def marked_pids(marker: str, *, exact: bool = False) -> list[int]:
    """Processes whose environment carries this marker (or, unless ``exact``, a tag under it)."""
    prefix = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            variables = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v == prefix or (not exact and v.startswith(prefix + b".")) for v in variables):
            found.append(int(entry.name))
    return found


def install_stop_handlers(stop: Callable[[], None], hard_timeout: float) -> None:
    """Run ``stop`` at exit; turn SIGINT/SIGTERM/SIGHUP and the hard timeout into :class:`Interrupted`."""

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    def expired(signum: int, frame: Any) -> None:
        raise Interrupted(f"hard timeout of {hard_timeout:.0f}s")

    atexit.register(stop)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(int(hard_timeout))


def quiet_signals() -> None:
    """While stopping: no second interruption, no timeout."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.alarm(0)


# REST API


class Api:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def login(self, username: str, password: str) -> None:
        response = self.http.post("/auth/token", json={"username": username, "password": password})
        require(response.status_code == 201, f"POST /auth/token -> {response.status_code} {response.text[:300]}")
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, "/api/v2" + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.request("GET", path, **kwargs)
        require(response.status_code == 200, f"GET {path} -> {response.status_code} {response.text[:300]}")
        return response.json()

    def close(self) -> None:
        self.http.close()


def run_path(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"


def xcom(api: Api, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    path = run_path(dag_id, run_id) + f"/taskInstances/{task_id}/xcomEntries/{quote(key, safe='')}"
    params = {"deserialize": "true", **({"map_index": str(map_index)} if map_index >= 0 else {})}
    return api.get(path, params=params)["value"]


def task_log(api: Api, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
    path = run_path(dag_id, run_id) + f"/taskInstances/{task_id}/logs/{try_number}"
    params = {"full_content": "true", **({"map_index": str(map_index)} if map_index >= 0 else {})}
    body = api.get(path, params=params, headers={"Accept": "application/json"})
    return "\n".join(entry if isinstance(entry, str) else json.dumps(entry) for entry in body["content"])


def fake_control(url: str, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
    """Call a bundled fake server's ``/_fake/<route>`` control route (no auth, never faulted)."""
    response = httpx.request(method, f"{url.removesuffix('/v1')}/_fake/{route}", json=body, timeout=30)
    require(response.status_code == 200, f"{method} /_fake/{route} -> {response.status_code} {response.text}")
    return response.json()
