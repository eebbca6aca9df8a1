"""OpenAIBatchSplitOperator: cut an oversize input into shards for ``.expand()`` (floor 3).

The Batch API refuses files over 50,000 requests, 200 MB or (embeddings) 50,000 inputs.
This operator wraps :func:`~airflow_provider_openai_batch.inputs.splitter.split_batch_file` and
returns the shard locations, so a DAG fans out with
``OpenAIBatchOperator.partial(...).expand(input_file=split.output)``. In a distributed
deployment the destination must be shared storage (an ObjectStoragePath such as
``s3://bucket/shards/``): a local folder is only visible to the worker that wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_openai_batch.compat import BaseOperator
from airflow_provider_openai_batch.inputs.splitter import split_batch_file
from airflow_provider_openai_batch.operators._inputs import resolve_location


class OpenAIBatchSplitOperator(BaseOperator):
    """Split ``source`` into shards under ``destination`` that each satisfy every batch limit.

    :param source: the big JSONL (local path, storage URI or ObjectStoragePath). Templated.
    :param destination: a folder (local, or shared storage for distributed workers). Templated.
    :param endpoint: the batch endpoint every line targets. Templated.
    :param max_requests: requests per shard (API limit 50,000). Templated (e.g. from params).
    :param max_bytes: bytes per shard (API limit 209,715,200).
    :param max_embedding_inputs: embedding inputs per shard (API limit 50,000).
    :param max_tokens_per_shard: optional estimated-token budget per shard, to stay under the
        organisation's enqueued-token limit.
    :param skip_blank_lines: write the shards without the source's blank lines instead of refusing
        a source with a blank line before a request.
    """

    template_fields: Sequence[str] = ("source", "destination", "endpoint", "max_requests", "max_tokens_per_shard")
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        source: Any,
        destination: Any,
        endpoint: str = "/v1/chat/completions",
        max_requests: int | str = 50_000,
        max_bytes: int = 209_715_200,
        max_embedding_inputs: int = 50_000,
        max_tokens_per_shard: int | str | None = None,
        skip_blank_lines: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.destination = destination
        self.endpoint = endpoint
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.max_embedding_inputs = max_embedding_inputs
        self.max_tokens_per_shard = max_tokens_per_shard
        self.skip_blank_lines = skip_blank_lines

    def execute(self, context: Any) -> list[str]:
        shards = split_batch_file(
            resolve_location(self.source),
            resolve_location(self.destination),
            self.endpoint,
            max_requests=int(self.max_requests),
            max_bytes=int(self.max_bytes),
            max_embedding_inputs=int(self.max_embedding_inputs),
            max_tokens_per_shard=int(self.max_tokens_per_shard) if self.max_tokens_per_shard else None,
            skip_blank_lines=self.skip_blank_lines,
        )
        self.log.info("Split %s into %d shard(s) under %s", self.source, len(shards), self.destination)
        return shards
