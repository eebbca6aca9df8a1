"""Apache Airflow 3 provider for the OpenAI Batch API.

Public names are re-exported lazily so ``import airflow_provider_openai_batch`` stays
cheap and floor-1 helpers (``validate_batch_file``, ``split_batch_file``) can be used
without loading Airflow's operator machinery.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "OpenAIBatchHook": "airflow_provider_openai_batch.hooks.batch",
    "OpenAIBatchOperator": "airflow_provider_openai_batch.operators.batch",
    "OpenAIBatchResultsOperator": "airflow_provider_openai_batch.operators.results",
    "OpenAIBatchSplitOperator": "airflow_provider_openai_batch.operators.split",
    "OpenAIBatchSensor": "airflow_provider_openai_batch.sensors.batch",
    "OpenAIBatchTrigger": "airflow_provider_openai_batch.triggers.batch",
    "OpenAIBatchEventTrigger": "airflow_provider_openai_batch.triggers.events",
    "OpenAIBatchLink": "airflow_provider_openai_batch.links",
    "validate_batch_file": "airflow_provider_openai_batch.inputs.batchfile",
    "split_batch_file": "airflow_provider_openai_batch.inputs.splitter",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
