"""The terminal side of ``make demo``: Airflow's logs go to a file, the terminal shows the story.

Airflow's own start-up and task logs are ~150 lines for one small run. A first-time user wants
to see the tasks move and the batch progress, then the result; the full log stays one path away.
So :func:`logs_to_file` points the process's stdout and stderr (the file descriptors, which is
what Airflow's log handlers and the tasks' ``print`` write to) at a file, and hands back a stream
on the real terminal. :class:`RunWatcher` then prints, from a background thread:

* each task's state when it changes (read from the Airflow DB, as the UI would), from ``running`` on;
  ``running`` itself comes from ``dag.test()``'s log line, as a short task can run between two looks;
  a task waiting for its trigger shows as ``deferred`` (``dag.test()`` keeps it ``queued`` meanwhile);
* the batch's progress as the trigger logs it (``in_progress 10/24 (41.7%), 1 failed``), picked
  out of the log file; on an interactive terminal the progress line is rewritten in place.

Nothing here imports Airflow at module level: the caller sets ``AIRFLOW_HOME`` first.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

PROGRESS = re.compile(
    r": (?:(?P<validating>validating)(?=\s)|"
    r"(?P<status>validating|in_progress|finalizing|completed|failed|expired|cancelling|cancelled) "
    r"(?P<done>[\d,]+)/(?P<total>[\d,]+) \((?P<percent>[\d.]+)%\)(?:, (?P<failed>[\d,]+) failed)?)"
)
"""The trigger's progress line (``Batch <id>: in_progress 10/24 (41.7%), 1 failed``; a batch still
``validating`` has no counts yet), wherever it sits in a log line."""

EXCEPTION = re.compile(r"^(?:[a-z_][\w]*\.)*(?P<name>[A-Z]\w*(?:Error|Exception|Failure|Timeout)\w*): (?P<message>.+)$")
"""The last line of a logged traceback: ``package.module.SomeError: what went wrong``."""

TROUBLE_STATES = {"failed", "up_for_retry", "upstream_failed"}
"""States printed with the last exception found in the log, so the terminal says why."""

STARTING = re.compile(r"\[DAG TEST\] starting task_id=(?P<task_id>[\w.-]+)")
"""``dag.test()``'s log line as it starts a task. A quick task can be ``running`` for less than one
look at the DB, so its ``running`` line comes from here, where nothing is missed."""

QUIET_STATES = {None, "none", "scheduled", "queued"}
"""States every task passes through on its way to ``running``: not worth a line each."""


@contextlib.contextmanager
def logs_to_file(path: Path) -> Iterator[TextIO]:
    """Send fd 1 and fd 2 to ``path`` for the duration; yield a line-buffered stream on the old stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # the watcher tails the file
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        terminal.close()


def progress_text(match: re.Match[str]) -> str:
    if match["validating"]:
        return "validating"
    text = f"{match['status']:<12} {match['done']}/{match['total']} ({match['percent']}%)"
    return text + (f", {match['failed']} failed" if match["failed"] else "")


class RunWatcher:
    """Prints task-state changes of the newest run of ``dag_id`` and the batch's progress, until stopped."""

    def __init__(self, dag_id: str, log_path: Path, out: TextIO, *, interval: float = 0.25) -> None:
        self.dag_id = dag_id
        self.log_path = log_path
        self.out = out
        self.interval = interval
        self.started = time.monotonic()
        self.states: dict[str, str] = {}
        self.progress: str | None = None
        self.last_error: str | None = None
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        self._pending = b""
        self._progress_open = False
        self._interactive = out.isatty()
        self._first_run_id = self._newest_run_key()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-watcher", daemon=True)

    def __enter__(self) -> RunWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.poll()  # the last changes, after the run ended
        self._end_progress_line()

    # -- what to print -------------------------------------------------------------------------

    def _stamp(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        return f"{elapsed // 60:02d}:{elapsed % 60:02d}"

    def _print(self, text: str) -> None:
        self._end_progress_line()
        self.out.write(f"  {self._stamp()}  {text}\n")

    def _print_progress(self, text: str) -> None:
        line = f"  {self._stamp()}  {'batch':<15} {text}"
        if self._interactive:
            self.out.write(("\r\x1b[K" if self._progress_open else "") + line)
            self.out.flush()
            self._progress_open = True
        else:
            self.out.write(line + "\n")

    def _end_progress_line(self) -> None:
        if self._progress_open:
            self.out.write("\n")
            self._progress_open = False

    # -- where it comes from -------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        self._poll_log()
        with contextlib.suppress(Exception):  # a busy SQLite: try again next time
            self._poll_tasks()

    def _newest_run_key(self) -> int:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import func, select

        with create_session() as session:
            return session.scalar(select(func.max(DagRun.id)).where(DagRun.dag_id == self.dag_id)) or 0

    def _poll_tasks(self) -> None:
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            run_id = session.scalar(
                select(DagRun.run_id)
                .where(DagRun.dag_id == self.dag_id, DagRun.id > self._first_run_id)
                .order_by(DagRun.id.desc())
                .limit(1)
            )
            if run_id is None:
                return
            rows = session.execute(
                select(TaskInstance.task_id, TaskInstance.state, TaskInstance.try_number, TaskInstance.next_method)
                .where(TaskInstance.dag_id == self.dag_id, TaskInstance.run_id == run_id)
                .order_by(TaskInstance.start_date.is_(None), TaskInstance.start_date)
            ).all()
        for task_id, state, try_number, next_method in rows:
            name = str(getattr(state, "value", state)).lower() if state is not None else None
            if name in ("queued", "scheduled") and next_method is not None:
                name = "deferred"  # dag.test() queues a deferred task while it runs the trigger in line
            if name not in QUIET_STATES:
                self._note_state(task_id, name, try_number=try_number)

    def _note_state(self, task_id: str, name: str, *, try_number: int | None) -> None:
        """Print ``task_id``'s new state, once per change, whichever source saw it first."""
        if self.states.get(task_id) == name:
            return
        self.states[task_id] = name
        retry = f" (try {try_number})" if try_number and try_number > 1 else ""
        why = f": {self.last_error}" if name in TROUBLE_STATES and self.last_error else ""
        self._print(f"{task_id:<15} {name}{retry}{why}")

    def _poll_log(self) -> None:
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            chunk = log.read()
            self._log_offset = log.tell()
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            starting = STARTING.search(text)
            if starting is not None:
                self._note_state(starting["task_id"], "running", try_number=None)
            error = EXCEPTION.match(text)
            if error is not None:
                self.last_error = f"{error['name']}: {error['message']}"[:160]
            match = PROGRESS.search(text)
            if match is None:
                continue
            text = progress_text(match)
            if text != self.progress:
                self.progress = text
                self._print_progress(text)
