"""The plugin as Airflow loads it: declared in provider info, valid, mounted under /openai-batch."""

from __future__ import annotations

import importlib

import pytest

from airflow_provider_openai_batch import compat
from airflow_provider_openai_batch.get_provider_info import get_provider_info
from airflow_provider_openai_batch.plugins import OpenAIBatchPlugin
from airflow_provider_openai_batch.plugins.lazy import LazyASGIApp


def test_provider_info_names_the_plugin_class():
    [entry] = get_provider_info()["plugins"]
    module, _, name = entry["plugin-class"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is OpenAIBatchPlugin
    assert entry["name"] == OpenAIBatchPlugin.name


@pytest.mark.skipif(
    not compat.SUPPORTS_PLUGINS,
    reason=f"plugin FastAPI apps and external views need Airflow >= 3.1 (this is {compat.AIRFLOW_VERSION_STRING})",
)
def test_airflow_loads_the_app_and_both_views():
    from airflow import plugins_manager

    if hasattr(plugins_manager, "get_fastapi_plugins"):
        apps, _ = plugins_manager.get_fastapi_plugins()
        views, _ = plugins_manager._get_ui_plugins()
    else:  # Airflow 3.1: module-level lists filled by the initialize_* functions
        plugins_manager.initialize_fastapi_plugins()
        plugins_manager.initialize_ui_plugins()
        apps, views = plugins_manager.fastapi_apps, plugins_manager.external_views
    ours = [a for a in apps if a["url_prefix"] == "/openai-batch"]
    assert len(ours) == 1 and ours[0]["name"] == "OpenAI Batches"
    by_name = {v["name"]: v for v in views}
    assert by_name["OpenAI Batches"]["destination"] == "nav"
    assert by_name["OpenAI Batches"]["href"] == "/openai-batch/"
    tab = by_name["OpenAI Batch"]
    assert tab["destination"] == "task_instance"
    for placeholder in ("{DAG_ID}", "{RUN_ID}", "{TASK_ID}", "{MAP_INDEX}"):
        assert placeholder in tab["href"]


def test_the_app_is_built_on_first_use_only():
    lazy = LazyASGIApp("airflow_provider_openai_batch.plugins.app:create_app")
    assert lazy._app is None
    app = lazy.app
    assert lazy.app is app
    paths = {route.path for route in app.routes}
    assert {"/", "/api/batches", "/api/batches/{batch_id}", "/api/batches/{batch_id}/cancel"} <= paths
