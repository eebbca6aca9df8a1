"""The ``airflow.plugins`` entry point: loads the plugin where Airflow skips provider plugins.

Airflow 3.3 registers the plugins a provider declares in ``get_provider_info()`` only when
``[core] lazy_discover_providers`` is False, and it is True by default, so with default
settings the page would not appear. The entry point group is always read; this module offers
the plugin there only in that default case, so it is never registered twice (which Airflow would
report as a plugin import error).
"""

from __future__ import annotations

from airflow_provider_openai_batch import compat
from airflow_provider_openai_batch.plugins.plugin import OpenAIBatchPlugin as _Plugin


def _providers_load_it() -> bool:
    return not compat.conf.getboolean("core", "lazy_discover_providers", fallback=True)


OpenAIBatchPlugin = None if _providers_load_it() else _Plugin
