"""Provider metadata for Airflow's ProvidersManager (the ``apache_airflow_provider`` entry point).

The connection form is described here (``conn-fields`` and ``ui-field-behaviour``), so the
Airflow 3 UI renders it without importing the hook.
"""

from __future__ import annotations

from typing import Any

PACKAGE = "airflow_provider_openai_batch"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-openai-batch",
        "name": "OpenAI Batch",
        "description": "Run OpenAI Batch API jobs from Airflow: validate, submit once, wait deferred, land results.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "OpenAI Batch",
                "external-doc-url": "https://platform.openai.com/docs/guides/batch",
                "tags": ["ai"],
            }
        ],
        "hooks": [{"integration-name": "OpenAI Batch", "python-modules": [f"{PACKAGE}.hooks.batch"]}],
        "operators": [
            {
                "integration-name": "OpenAI Batch",
                "python-modules": [
                    f"{PACKAGE}.operators.batch",
                    f"{PACKAGE}.operators.results",
                    f"{PACKAGE}.operators.split",
                ],
            }
        ],
        "sensors": [{"integration-name": "OpenAI Batch", "python-modules": [f"{PACKAGE}.sensors.batch"]}],
        "triggers": [{"integration-name": "OpenAI Batch", "python-modules": [f"{PACKAGE}.triggers.batch"]}],
        "extra-links": [f"{PACKAGE}.links.OpenAIBatchLink"],
        "plugins": [{"name": "openai_batch", "plugin-class": f"{PACKAGE}.plugins.OpenAIBatchPlugin"}],
        "connection-types": [
            {
                "hook-class-name": f"{PACKAGE}.hooks.batch.OpenAIBatchHook",
                "connection-type": "openai_batch",
                "hook-name": "OpenAI Batch",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://api.openai.com/v1",
                        "password": "sk-...",
                        "extra": '{"organization": "org-...", "project": "proj_..."}',
                    },
                },
                "conn-fields": {
                    "organization": {
                        "label": "Organization",
                        "schema": {"type": ["string", "null"]},
                        "description": "Sent as OpenAI-Organization; usage is billed there.",
                    },
                    "project": {
                        "label": "Project",
                        "schema": {"type": ["string", "null"]},
                        "description": "Sent as OpenAI-Project.",
                    },
                },
            }
        ],
    }
