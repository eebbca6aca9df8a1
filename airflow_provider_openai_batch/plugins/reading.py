"""Stand-in for ``waiting/poller.py``'s ``read_batches`` until the shared paged reader lands on main.

Same name, signature and answer shape (per id: the Batch, or the API error that kept it from
being read): list pages newest first until every id is seen or the page budget is spent, then
single GETs for the rest.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from airflow_provider_openai_batch.api.exceptions import OpenAIAPIError
from airflow_provider_openai_batch.api.models import Batch

PAGE_SIZE = 100


async def read_batches(
    client, batch_ids: Collection[str], *, page_budget: int | None = None
) -> dict[str, Batch | OpenAIAPIError]:
    wanted = set(batch_ids)
    budget = math.ceil(len(wanted) / PAGE_SIZE) + 3 if page_budget is None else page_budget
    found: dict[str, Batch | OpenAIAPIError] = {}
    after: str | None = None
    pages = 0
    while wanted - found.keys() and pages < budget:
        pages += 1
        page = await client.list_batches(after=after, limit=PAGE_SIZE)
        for batch in page.data:
            if batch.id in wanted:
                found[batch.id] = batch
        if not page.has_more or not page.data:
            break
        after = page.data[-1].id
    for batch_id in sorted(wanted - found.keys()):
        try:
            found[batch_id] = await client.get_batch(batch_id)
        except OpenAIAPIError as error:
            found[batch_id] = error
    return found
