"""The state shared by the route handlers of one fake server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_openai_batch.testing.batches import BatchEngine
from airflow_provider_openai_batch.testing.faults import FaultInjector
from airflow_provider_openai_batch.testing.observe import Recorder
from airflow_provider_openai_batch.testing.store import FileStore


@dataclass(frozen=True)
class Context:
    files: FileStore
    engine: BatchEngine
    faults: FaultInjector
    recorder: Recorder
    clock: Callable[[], float]
    allowed_completion_windows: tuple[str, ...]
