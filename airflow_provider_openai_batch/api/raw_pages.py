"""List pages kept as the JSON the API sent, one ``bytes`` per batch (floor 1: no Airflow import).

Why not pydantic models: the shared poller reads every batch of a page, but only the triggers
due now need a :class:`~airflow_provider_openai_batch.api.models.Batch`; the rest of the page is
kept a while for triggers due soon. A kept model is five objects CPython's collector tracks,
and kept states are replaced every round, so at thousands of batches they are promoted to the
old generation by the tens of thousands per poll interval, and every quarter of the old
generation so promoted costs a full collection, a stall of the whole triggerer (measured in
``benchmarks/trigger_scale.py``). A ``bytes`` object is not tracked at all; a batch is parsed
when someone asks for it, and the model dies with the caller's poll.

msgspec (already a dependency, for results landing) splits the page: the list body is checked
for shape and each item's ``id`` is read without building the rest. A body of another shape
raises ``ValueError`` (msgspec's errors are ``ValueError`` subclasses), as pydantic's did.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class _Page(msgspec.Struct):
    data: list[msgspec.Raw]
    has_more: bool = False


class _Identified(msgspec.Struct):
    id: str


class RawPage(NamedTuple):
    """A list page: ``(batch id, the batch's JSON)`` newest first, and whether older pages follow."""

    items: list[tuple[str, bytes]]
    has_more: bool


_PAGE = msgspec.json.Decoder(_Page)
_ID = msgspec.json.Decoder(_Identified)


def parse_raw_page(content: bytes) -> RawPage:
    """Split a ``GET /v1/batches`` body into its batches' JSON, each with its id."""
    page = _PAGE.decode(content)
    items = []
    for raw in page.data:
        body = bytes(raw)
        items.append((_ID.decode(body).id, body))
    return RawPage(items, page.has_more)
