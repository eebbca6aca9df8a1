"""OpenAIBatchPlugin: the "OpenAI Batches" page and task tab on the Airflow api-server (floor 3).

Airflow >= 3.1 mounts ``fastapi_apps`` on the api-server and shows ``external_views`` in its
UI. Airflow 3.0 has neither: there the plugin registers nothing and says so in one log line,
and the rest of the provider works as before.
"""

from __future__ import annotations

import logging

from airflow_provider_openai_batch.plugins.lazy import LazyASGIApp

log = logging.getLogger(__name__)

URL_PREFIX = "/openai-batch"
PLUGIN_NAME = "openai_batch"


def _supports_plugins() -> bool:
    from airflow import __version__
    from packaging.version import Version

    return Version(Version(__version__).base_version) >= Version("3.1")


def _fastapi_apps() -> list[dict]:
    return [{"app": LazyASGIApp(f"{__package__}.app:create_app"), "url_prefix": URL_PREFIX, "name": "OpenAI Batches"}]


def _external_views() -> list[dict]:
    return [
        {
            "name": "OpenAI Batches",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "openai-batches",
        },
        {
            "name": "OpenAI Batch",
            "href": f"{URL_PREFIX}/?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": "openai-batch",
        },
    ]


try:
    from airflow.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover - every Airflow 3 has it; kept so the import never breaks a task
    AirflowPlugin = object  # type: ignore[assignment,misc]

_SUPPORTED = _supports_plugins()
if not _SUPPORTED:
    log.info(
        "OpenAI Batch: the 'OpenAI Batches' page needs Airflow >= 3.1 (api-server plugins); "
        "this Airflow has no plugin apps or external views, so the page and task tab are off."
    )


class OpenAIBatchPlugin(AirflowPlugin):
    """Mounts the app under ``/openai-batch`` and adds the navigation entry and task tab."""

    name = PLUGIN_NAME
    fastapi_apps = _fastapi_apps() if _SUPPORTED else []
    external_views = _external_views() if _SUPPORTED else []
