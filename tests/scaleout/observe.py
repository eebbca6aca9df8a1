"""What the scale-out runner reads beside the REST API: trigger rows and triggerer jobs in Postgres, logs.

A trigger row lives only while its task is deferred, so the runner samples the table about once a
second and keeps, per trigger, every triggerer job that held it and the ``end_time`` in its kwargs
each time it was read: that is how "the other triggerer adopted it" and "the deadline is the
original one" are shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet

BLOCKED = re.compile(r"Triggerer's async thread was blocked for ([0-9.]+) seconds")


@dataclass
class TriggerSeen:
    trigger_id: int
    classpath: str
    task: str
    """``dag_id/run_id/task_id[map_index]`` of the deferred task."""
    end_times: set[float | None] = field(default_factory=set)
    holders: list[int] = field(default_factory=list)
    """Triggerer job ids in the order they were seen holding the row (no repeats in a row)."""
    samples: int = 0
    kwargs_text: str = ""


def find_key(value: Any, key: str) -> Any:
    """The first ``key`` in a nested JSON value (Airflow wraps kwargs in ``__var`` / ``__type``)."""
    if isinstance(value, dict):
        if key in value:
            found = value[key]
            return found.get("__var", found) if isinstance(found, dict) else found
        for item in value.values():
            found = find_key(item, key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


@dataclass
class Observer:
    connect: Any
    fernet_key: str
    triggers: dict[int, TriggerSeen] = field(default_factory=dict)
    db: Any = None

    def _cursor(self) -> Any:
        if self.db is None or self.db.closed:
            self.db = self.connect()
        return self.db.cursor()

    def decode(self, kwargs: str) -> str:
        """The execution API stores a deferred task's trigger kwargs as plain JSON (3.3.2); others encrypt."""
        if kwargs.startswith("{"):
            return kwargs
        return Fernet(self.fernet_key.encode()).decrypt(kwargs.encode()).decode()

    def sample(self) -> dict[int, int | None]:
        """Read every trigger row now; return ``trigger id -> triggerer job id`` (None: unassigned)."""
        now: dict[int, int | None] = {}
        try:
            with self._cursor() as cursor:
                cursor.execute(
                    "SELECT t.id, t.classpath, t.kwargs, t.triggerer_id, ti.dag_id, ti.run_id, ti.task_id, "
                    "ti.map_index FROM trigger t LEFT JOIN task_instance ti ON ti.trigger_id = t.id"
                )
                rows = cursor.fetchall()
        except psycopg.Error:
            self.db = None
            return now
        for trigger_id, classpath, kwargs, triggerer_id, dag_id, run_id, task_id, map_index in rows:
            task = f"{dag_id}/{run_id}/{task_id}" + (
                f"[{map_index}]" if map_index is not None and map_index >= 0 else ""
            )
            seen = self.triggers.setdefault(trigger_id, TriggerSeen(trigger_id, classpath.rsplit(".", 1)[-1], task))
            seen.samples += 1
            seen.kwargs_text = self.decode(kwargs)
            end_time = find_key(json.loads(seen.kwargs_text), "end_time")
            seen.end_times.add(float(end_time) if end_time is not None else None)
            if triggerer_id is not None and (not seen.holders or seen.holders[-1] != triggerer_id):
                seen.holders.append(triggerer_id)
            now[trigger_id] = triggerer_id
        return now

    def triggerer_jobs(self) -> dict[int, str]:
        """Triggerer job id -> the host name its component gave itself (``triggerer-1``...)."""
        with self._cursor() as cursor:
            cursor.execute("SELECT id, hostname FROM job WHERE job_type = 'TriggererJob'")
            return {job_id: hostname for job_id, hostname in cursor.fetchall()}

    def close(self) -> None:
        if self.db is not None and not self.db.closed:
            self.db.close()


def longest_stall(logs: list[Path]) -> tuple[float, str] | None:
    """The longest "async thread was blocked" warning in the triggerers' output, with its component."""
    worst: tuple[float, str] | None = None
    for path in logs:
        for match in BLOCKED.finditer(path.read_text(errors="replace")):
            seconds = float(match.group(1))
            if worst is None or seconds > worst[0]:
                worst = (seconds, path.stem)
    return worst


def trigger_log_jobs(home: Path, task: str) -> set[int]:
    """Triggerer job ids that wrote a ``<task log>.trigger.<job id>.log`` for this task (any try)."""
    dag_id, run_id, rest = task.split("/", 2)
    task_id, _, map_part = rest.partition("[")
    folder = home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if map_part:
        folder = folder / f"map_index={map_part.rstrip(']')}"
    jobs = set()
    for path in folder.glob("attempt=*.log.trigger.*.log"):
        number = path.name.rsplit(".", 2)[-2]
        if number.isdigit():
            jobs.add(int(number))
    return jobs
