"""Where the "OpenAI Batch" extra link points."""

from __future__ import annotations

from airflow_provider_openai_batch.links import dashboard_url


def test_openai_batches_link_to_the_platform_dashboard():
    assert dashboard_url("batch_1", "https://api.openai.com/v1") == "https://platform.openai.com/batches/batch_1"
    assert dashboard_url("batch_1", "https://api.openai.com/v1/") == "https://platform.openai.com/batches/batch_1"


def test_other_services_link_only_where_the_connection_says():
    assert dashboard_url("batch_1", "https://example.openai.azure.com/openai/v1") is None
    template = "http://127.0.0.1:8765/_fake/batches/{batch_id}"
    assert (
        dashboard_url("batch_1", "http://127.0.0.1:8765/v1", template) == "http://127.0.0.1:8765/_fake/batches/batch_1"
    )


def test_no_batch_no_link():
    assert dashboard_url(None, "https://api.openai.com/v1") is None
