"""The provider's Airflow plugin (floor 3): the "OpenAI Batches" page, its JSON API and task tab."""

from __future__ import annotations

from airflow_provider_openai_batch.plugins.plugin import OpenAIBatchPlugin

__all__ = ["OpenAIBatchPlugin"]
