"""What the real-deployment runners share: child processes that are always stopped, a run's life and
report, the REST API, waiting.

``tests/deployment/run_deployment.py``, ``run_events.py``, ``run_ui.py`` and
``tests/scaleout/run_scaleout.py`` start real servers and Airflow components. Every child leads
its own process group and carries a marker in its environment, so that a stop (also after a
failure, a signal or the hard timeout) finds every process this run started and nothing else.
:func:`run_scenario` is each runner's ``main``: temp folder, stop handlers, timed phases, the
summary; the runner gives only its scenario. The Airflow side lives in ``airflow_deployment.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
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


# A run: its report, its phases, its summary


@dataclass
class Report:
    """What a run found. Every check runs and records its failure, so one run lists every problem."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    """Detail printed after the figures."""

    def expect(self, condition: Any, message: str) -> bool:
        """A check whose message says what went wrong: recorded only when it fails."""
        if not condition:
            self.failed.append(message)
            log(f"CHECK FAILED: {message}")
        return bool(condition)

    def confirm(self, condition: Any, message: str) -> bool:
        """A check whose message states the fact it proves: listed as passed or failed."""
        (self.passed if condition else self.failed).append(message)
        log(("ok: " if condition else "CHECK FAILED: ") + message)
        return bool(condition)


@dataclass
class Run:
    """One runner's life: a temp folder, the stack of children, timed phases and what to close at the end."""

    home: Path
    stack: Stack
    report: Report = field(default_factory=Report)
    timings: dict[str, float] = field(default_factory=dict)
    closers: list[Callable[[], Any]] = field(default_factory=list)
    """Called once after the stop (also after a failure): in-process servers, clients."""

    def phase(self, name: str, step: Callable[[], Any]) -> Any:
        begin = time.monotonic()
        log(f"{name} ...")
        value = step()
        self.timings[name] = time.monotonic() - begin
        return value

    def stop(self) -> None:
        """Stop every child (idempotent); a runner may call it early, to read complete logs after it."""
        quiet_signals()
        if self.stack.stopped:
            return
        begin = time.monotonic()
        for note in self.stack.stop():
            log(note)
        self.timings["stop"] = time.monotonic() - begin


def run_scenario(
    title: str,
    scenario: Callable[[Run], Any],
    *,
    log_tag: str,
    home_prefix: str,
    timeout_variable: str,
    default_timeout: float,
    keep_variable: str | None = None,
) -> int:
    """A runner's ``main``: run ``scenario`` in a fresh temp folder, stop everything, print the summary.

    The hard limit in seconds is ``$timeout_variable`` (else ``default_timeout``). The temp folder is
    removed on success unless ``$keep_variable`` is 1; it is always kept on failure. Returns the exit
    code (0 when the scenario finished and no check failed).
    """
    LOG_PREFIX[0] = log_tag
    hard_timeout = float(os.environ.get(timeout_variable, default_timeout))
    keep = keep_variable is not None and os.environ.get(keep_variable) == "1"
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix=home_prefix))
    run = Run(home=home, stack=Stack(marker=secrets.token_hex(8)))
    install_stop_handlers(run.stop, hard_timeout)
    aborted: str | None = None
    try:
        log(f"temp folder {home}")
        scenario(run)
    except (CheckFailed, Interrupted, Exception) as error:
        aborted = f"{type(error).__name__}: {error}"
        log(f"ABORTED: {aborted}")
        if not isinstance(error, CheckFailed):
            traceback.print_exc()
        for component in run.stack.components:
            print(f"\n----- last lines of {component.name} ({component.log_path}) -----\n{tail(component.log_path)}")
    finally:
        run.stop()
        for close in run.closers:
            with contextlib.suppress(Exception):
                close()

    report = run.report
    ok = aborted is None and not report.failed
    print(f"\n=== {title} summary ===")
    for fact in report.passed:
        print(f"  ok   {fact}")
    for failure in report.failed:
        print(f"  FAIL {failure}")
    if aborted:
        print(f"  FAIL aborted: {aborted}")
    if report.figures:
        print("  figures:")
        for name, value in report.figures.items():
            print(f"    {name}: {value}")
    for line in report.lines:
        print(f"  {line}")
    print("  durations: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in run.timings.items()))
    print(f"  total {time.monotonic() - started:.1f}s -> {'PASSED' if ok else 'FAILED'}")
    if ok and not keep:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"  temp folder kept at {home}")
    return 0 if ok else 1


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
