"""OpenAIBatchPlugin: the "OpenAI Batches" page and task tab on the Airflow api-server (floor 3).

Airflow >= 3.1 mounts ``fastapi_apps`` on the api-server and shows ``external_views`` in its
UI. Airflow 3.0 has neither: there the plugin registers nothing and says so in one log line,
and the rest of the provider works as before.
"""

from __future__ import annotations

from airflow_provider_openai_batch.compat import SUPPORTS_PLUGINS, AirflowPlugin, log_degraded
from airflow_provider_openai_batch.plugins.lazy import LazyASGIApp

URL_PREFIX = "/openai-batch"
PLUGIN_NAME = "openai_batch"


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


if not SUPPORTS_PLUGINS:
    log_degraded(
        "the 'OpenAI Batches' page and task tab (api-server plugin apps and external views)",
        "3.1",
        "the plugin registers nothing and the rest of the provider works as before",
    )


class OpenAIBatchPlugin(AirflowPlugin):
    """Mounts the app under ``/openai-batch`` and adds the navigation entry and task tab."""

    name = PLUGIN_NAME
    fastapi_apps = _fastapi_apps() if SUPPORTS_PLUGINS else []
    external_views = _external_views() if SUPPORTS_PLUGINS else []
