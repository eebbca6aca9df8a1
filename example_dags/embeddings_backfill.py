"""Embeddings backfill: split a large input, fan out one batch per shard, land the vectors."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from typing import Any

from airflow.sdk import ObjectStoragePath, Param, dag, task

from airflow_provider_openai_batch import (
    OpenAIBatchOperator,
    OpenAIBatchResultsOperator,
    OpenAIBatchSplitOperator,
)
from airflow_provider_openai_batch.inputs.builder import embedding_request, write_batch_requests

BASE = os.environ.get("OPENAI_BATCH_EXAMPLES_BASE", "file:///tmp/openai-batch-examples")
MODEL = os.environ.get("OPENAI_BATCH_EMBEDDING_MODEL", "text-embedding-3-small")
POLL = float(os.environ.get("OPENAI_BATCH_POLL_INTERVAL", "60"))
POOL = os.environ.get("OPENAI_BATCH_POOL", "default_pool")

DOC = """
### Embeddings backfill on the OpenAI Batch API

1. **build_input** writes one `/v1/embeddings` request per document (here: generated texts; in
   real life, rows from your warehouse).
2. **split** cuts the file into shards that each satisfy every batch limit (50,000 requests,
   200 MB, 50,000 embedding inputs, and an optional token budget). Shards go to
   `OPENAI_BATCH_EXAMPLES_BASE`, which must be shared storage (`s3://...`) when workers run on
   several machines.
3. **embed** is `OpenAIBatchOperator.partial(...).expand(input_file=split.output)`: one batch per
   shard, each validated, submitted once and waited on in the triggerer.
4. **land** merges every shard's results into one JSONL; **write_vectors** keeps `id -> vector`.

**Staying under the enqueued-token limit.** OpenAI caps the tokens queued in a model's batches
per organisation; a batch over it fails with `token_limit_exceeded` (the operator then waits and
resubmits). To avoid that, cap how many batches are in flight at once with a pool that counts
deferred tasks, and point `OPENAI_BATCH_POOL` at it:

    airflow pools set openai_batch 4 "OpenAI batches in flight" --include-deferred
"""


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=DOC,
    tags=["openai", "batch", "embeddings"],
    params={
        "documents": Param(300, type="integer", minimum=1, description="How many documents to embed"),
        "shard_requests": Param(100, type="integer", minimum=1, maximum=50_000, description="Requests per shard"),
    },
)
def embeddings_backfill():
    @task(multiple_outputs=True)
    def build_input(params: dict[str, Any], run_id: str | None = None) -> dict[str, str]:
        folder = ObjectStoragePath(BASE) / "embeddings_backfill" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual")
        folder.mkdir(parents=True, exist_ok=True)
        documents = (f"Document {n}: notes about topic {n % 17} and item {n}." for n in range(params["documents"]))
        requests = (embedding_request(f"doc-{n}", MODEL, text) for n, text in enumerate(documents))
        summary = write_batch_requests(folder / "input.jsonl", requests, "/v1/embeddings")
        print(f"{summary.requests} embedding requests, {summary.embedding_inputs} inputs")
        return {
            "input": str(folder / "input.jsonl"),
            "shards": str(folder / "shards"),
            "results": str(folder / "results.jsonl"),
            "vectors": str(folder / "vectors.jsonl"),
        }

    paths = build_input()
    split = OpenAIBatchSplitOperator(
        task_id="split",
        source=paths["input"],
        destination=paths["shards"],
        endpoint="/v1/embeddings",
        max_requests="{{ params.shard_requests }}",
    )
    embed = OpenAIBatchOperator.partial(
        task_id="embed",
        endpoint="/v1/embeddings",
        poll_interval=POLL,
        deferrable=True,
        pool=POOL,
        retries=2,
    ).expand(input_file=split.output)
    land = OpenAIBatchResultsOperator(
        task_id="land",
        batch_id=embed.output,
        destination=paths["results"],
        input_file=paths["input"],
    )

    @task
    def write_vectors(manifest: dict[str, Any], results: str, vectors: str) -> dict[str, Any]:
        """Keep what the warehouse needs: one ``{"id", "embedding"}`` line per document."""
        written, dims = 0, 0
        with ObjectStoragePath(results).open("r") as source, ObjectStoragePath(vectors).open("w") as sink:
            for line in iter(source.readline, ""):  # readline: Airflow 3.0's storage file cannot be iterated
                record = json.loads(line)
                if record["status"] != "succeeded":
                    continue
                embedding = record["response"]["data"][0]["embedding"]
                dims = len(embedding)
                sink.write(json.dumps({"id": record["custom_id"], "embedding": embedding}) + "\n")
                written += 1
        print(f"Wrote {written} vectors of {dims} dimensions to {vectors}; result counts {manifest['counts']}")
        return {"vectors": written, "dimensions": dims, "path": vectors, "counts": manifest["counts"]}

    write_vectors(land.output, paths["results"], paths["vectors"])


embeddings_backfill()
